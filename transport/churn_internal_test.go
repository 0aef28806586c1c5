package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestChurningPeersLeaveNoState: a node that runs for weeks sees peers
// leave and join again, under their own IDs or new ones, each time with
// connections made both ways, requests, one-way messages and streams.
// Once they are gone and their connections ended, the node holds no more
// than it did: no goroutines, calls, connections, handshakes, stage queues
// or cancels of theirs, and at most maxDepartedIDs departed entries.
func TestChurningPeersLeaveNoState(t *testing.T) {
	if testing.Short() {
		t.Skip("churns peers for seconds")
	}
	static1 := cluster.NewStatic()
	n1 := startNode(t, "n1", static1, nil)
	n1m := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	echo := HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil })
	streamEcho := StreamHandlerFunc(func(ctx context.Context, s *Stream) {
		b := make([]byte, 1)
		_, _ = s.Read(b)
		_, _ = s.Write(b)
		_ = s.CloseWrite()
	})
	n1.Handle(1, echo)
	n1.HandleStream(2, streamEcho)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n2 := startNode(t, "n2", cluster.NewStatic(n1m), nil)
	n2.Handle(1, echo)
	n2.HandleStream(2, streamEcho)
	n2m := cluster.Member{ID: "n2", Addr: n2.Addr().String()}

	exchange := func(a *Transport, to cluster.NodeID) {
		// The first request may go out on a connection the Leave had
		// closed at the other end before this end read its close.
		_, err := a.Request(ctx, to, 1, []byte("ping"))
		if errors.Is(err, ErrConnectionReset) {
			_, err = a.Request(ctx, to, 1, []byte("ping"))
		}
		require.NoError(t, err)
		require.NoError(t, a.Send(ctx, to, 1, []byte("one-way")))
		s, err := a.OpenStream(ctx, to, 2)
		if errors.Is(err, ErrConnectionReset) || errors.Is(err, ErrRefused) {
			s, err = a.OpenStream(ctx, to, 2)
		}
		require.NoError(t, err)
		_, err = s.Write([]byte("x"))
		require.NoError(t, err)
		_, err = s.Read(make([]byte, 1))
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	idle := func() {
		// Both settled: n2's connections to n1 ended with its Leave.
		eventually(t, func() bool {
			n1.inboundMu.Lock()
			defer n1.inboundMu.Unlock()
			return len(n1.inConns) == 0 && len(n1.pendingByHost) == 0
		}, "n1 serves no connection of a node that left")
	}
	churn := func(rounds int, newIDs bool) {
		for i := range rounds {
			static1.Add(n2m)
			exchange(n1, "n2")
			exchange(n2, "n1")
			static1.Remove("n2")
			if !newIDs {
				continue
			}
			id := cluster.NodeID(fmt.Sprintf("gone-%d", i))
			if i%100 == 0 { // a pod, under a new ID at each start
				pod := startNode(t, id, cluster.NewStatic(n1m), nil)
				pod.Handle(1, echo)
				pod.HandleStream(2, streamEcho)
				static1.Add(cluster.Member{ID: id, Addr: pod.Addr().String()})
				exchange(n1, id)
				exchange(pod, "n1")
				require.NoError(t, pod.Close())
			} else {
				static1.Add(cluster.Member{ID: id, Addr: "127.0.0.1:1"})
				_ = n1.Send(ctx, id, 1, []byte("to no one"))
			}
			static1.Remove(id)
		}
		idle()
	}
	churn(50, false) // warm up: pools, maps at their working size
	goroutines := runtime.NumGoroutine()
	churn(1_000, true)

	eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines }, fmt.Sprintf("goroutines back to %d", goroutines))
	n1.forgetQuietStrangers() // the janitor
	// Each figure is read under its lock and checked once the lock is
	// let go: a check that fails ends the test, and a lock it held
	// wedged the nodes' Close in the cleanup, the failure never shown.
	n1.peersMu.RLock()
	peers, departed := len(n1.peers), len(n1.departed)
	n1.peersMu.RUnlock()
	require.Zero(t, peers, "peers")
	require.LessOrEqual(t, departed, maxDepartedIDs+1, "departed entries")
	for _, tr := range []*Transport{n1, n2} {
		tr.inboundMu.Lock()
		byHost, pending := len(tr.pendingByHost), tr.pendingHandshakes
		tr.inboundMu.Unlock()
		require.Zero(t, byHost, "handshakes")
		require.Equal(t, 0, pending)
		for i := range tr.calls.shards {
			s := &tr.calls.shards[i]
			s.mu.Lock()
			calls := len(s.calls)
			s.mu.Unlock()
			require.Zero(t, calls, "calls in flight")
		}
		// A stage lets a peer's entry go once that peer's last message
		// there is handled: a one-way message of the last round may still
		// be on its way to a handler.
		var byPeer map[Verb]int
		eventually(t, func() bool {
			byPeer = map[Verb]int{}
			tr.handlersMu.Lock()
			for verb, st := range tr.stages {
				st.mu.Lock()
				if len(st.byPeer) > 0 {
					byPeer[verb] = len(st.byPeer)
				}
				st.mu.Unlock()
			}
			tr.handlersMu.Unlock()
			return len(byPeer) == 0
		}, "stages' peers let go")
		require.Empty(t, byPeer, "stages' peers, by verb")
	}
	p := n2.peerStats("n1")
	p.cancels.mu.Lock()
	live := len(p.cancels.live)
	p.cancels.mu.Unlock()
	require.Zero(t, live, "n2's cancels of n1's requests")
}
