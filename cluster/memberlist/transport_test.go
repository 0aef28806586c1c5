package memberlist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// Transports whose membership is real memberlist on 127.0.0.1: how the
// transport follows members that restart, leave and come back.

// dialLog is a transport's Dialer that records the addresses it dials.
type dialLog struct {
	mu     sync.Mutex
	dialed map[string]int
}

func (d *dialLog) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed[addr]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *dialLog) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dialed[addr]
}

// memberNode is a transport and its memberlist membership.
type memberNode struct {
	m     *Membership
	tr    *transport.Transport
	dials *dialLog
}

// startMemberNode starts node id: its transport on 127.0.0.1:port, which
// freePorts picked, and memberlist on bind, joined through seeds. Both are
// closed at the end of the test, unless crash closed them before.
func startMemberNode(t *testing.T, id cluster.NodeID, port int, bind string, seeds ...string) *memberNode {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	m, err := Join(Config{NodeID: id, TransportAddr: addr, BindAddr: bind, Seeds: seeds,
		Tune: quickGossip, Logger: testLogger()})
	require.NoError(t, err)
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = id, "test", addr
	cfg.Membership = m
	dials := &dialLog{dialed: map[string]int{}}
	cfg.Dialer = dials
	cfg.Telemetry.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := transport.New(cfg)
	if err != nil {
		_ = m.Close()
		require.NoError(t, err)
	}
	tr.Start()
	n := &memberNode{m: m, tr: tr, dials: dials}
	t.Cleanup(n.crash)
	return n
}

// crash stops the node without Leave, as a killed process does.
func (n *memberNode) crash() {
	_ = n.tr.Close()
	_ = n.m.Close()
}

func echo(context.Context, *transport.Message) ([]byte, error) { return []byte("echo"), nil }

// waitLookup waits until m gives addr for id.
func waitLookup(t *testing.T, m *Membership, id cluster.NodeID, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		got, ok := m.Lookup(id)
		return ok && got.Addr == addr
	}, waitLimit, 5*time.Millisecond, "%s at %s; members %v", id, addr, m.Members())
}

// TestTransportFollowsAQuickRestartOnANewTransportAddress: n2 is killed
// with a request of n1's in its handler and restarts at once, at its
// gossip address, with a new transport address: memberlist keeps it a
// member and tells an Update. The request fails once, as reset; the next
// one reaches the new process; the old address is not dialled again.
func TestTransportFollowsAQuickRestartOnANewTransportAddress(t *testing.T) {
	ports := freePorts(t, 5)
	gossip := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	n1 := startMemberNode(t, "n1", ports[2], gossip(0))
	n2 := startMemberNode(t, "n2", ports[3], gossip(1), gossip(0))
	oldAddr := fmt.Sprintf("127.0.0.1:%d", ports[3])
	started := make(chan struct{}, 1)
	n2.tr.Handle(1, transport.HandlerFunc(func(ctx context.Context, msg *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done() // until the process ends
		return nil, ctx.Err()
	}))
	waitLookup(t, n1.m, "n2", oldAddr)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	held := make(chan error, 2)
	go func() {
		_, err := n1.tr.Request(ctx, "n2", 1, []byte("held"))
		held <- err
	}()
	<-started
	n2.crash()
	newAddr := fmt.Sprintf("127.0.0.1:%d", ports[4])
	restarted := startMemberNode(t, "n2", ports[4], gossip(1), gossip(0))
	restarted.tr.Handle(2, transport.HandlerFunc(echo))

	err := <-held
	require.ErrorIs(t, err, transport.ErrConnectionReset, "the request the killed process held")
	waitLookup(t, n1.m, "n2", newAddr)
	resp, err := n1.tr.Request(ctx, "n2", 2, []byte("after"))
	require.NoError(t, err, "a request to the restarted n2")
	assert.Equal(t, "echo", string(resp))
	dialedOld := n1.dials.count(oldAddr)
	for range 10 {
		_, err := n1.tr.Request(ctx, "n2", 2, nil)
		require.NoError(t, err)
	}
	assert.Equal(t, dialedOld, n1.dials.count(oldAddr), "n2's old address dialled again")
	assert.Len(t, held, 0, "a second outcome for the held request")
}

// TestEveryMessageHasOneOutcomeAcrossRestarts: n1 sends one-way messages
// and requests to n2 while n2 is killed and restarted, each time at its
// gossip address and on a new transport address. Once n1 holds nothing,
// every message it accepted is counted once, written or dropped.
func TestEveryMessageHasOneOutcomeAcrossRestarts(t *testing.T) {
	ports := freePorts(t, 3)
	gossip := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	n1 := startMemberNode(t, "n1", ports[2], gossip(0))
	n2 := startMemberNode(t, "n2", freePorts(t, 1)[0], gossip(1), gossip(0))
	n2.tr.Handle(1, transport.HandlerFunc(echo))
	require.Eventually(t, func() bool {
		_, ok := n1.m.Lookup("n2")
		return ok
	}, waitLimit, 5*time.Millisecond)

	// Sends that returned nil, and Requests but those refused before
	// they were queued (n2 unknown: not expected, as n2 stays a member).
	var accepted atomic.Uint64
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for range 4 {
		senders.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if n1.tr.Send(ctx, "n2", 1, []byte("one-way")) == nil {
					accepted.Add(1)
				}
				if _, err := n1.tr.Request(ctx, "n2", 1, []byte("request")); !errors.Is(err, transport.ErrUnknownPeer) {
					accepted.Add(1)
				}
				cancel()
			}
		})
	}
	for range 4 {
		time.Sleep(50 * time.Millisecond) // traffic while n2 runs
		n2.crash()
		n2 = startMemberNode(t, "n2", freePorts(t, 1)[0], gossip(1), gossip(0))
		n2.tr.Handle(1, transport.HandlerFunc(echo))
	}
	close(stop)
	senders.Wait()

	// A message the writer has taken from the queue is no longer in
	// PendingMessages but not yet in MessagesSent: until it is written,
	// only PendingBytes counts it.
	var written, dropped, pending, pendingBytes uint64
	require.Eventually(t, func() bool {
		written, dropped, pending, pendingBytes = 0, 0, 0, 0
		for _, cs := range n1.tr.Stats().Conns {
			if cs.Peer != "n2" && cs.Peer != transport.DepartedPeer {
				continue
			}
			written += cs.MessagesSent - cs.ResponsesSent
			pending += cs.PendingMessages
			pendingBytes += cs.PendingBytes
			for _, n := range cs.Dropped {
				dropped += n
			}
		}
		return pending == 0 && pendingBytes == 0
	}, waitLimit, 5*time.Millisecond, "n1 still holds messages for n2")
	assert.Equal(t, accepted.Load(), written+dropped, "messages accepted vs written + dropped")
}

// TestJoinLeaveChurnLeavesNoTrace: nodes under three IDs join, exchange
// requests with n1 and leave gracefully, again and again. Afterwards n1's
// transport lists no peer and holds no connection, its membership
// remembers nothing for reconnection, and the goroutines are back to what
// they were.
func TestJoinLeaveChurnLeavesNoTrace(t *testing.T) {
	ports := freePorts(t, 2)
	gossip := fmt.Sprintf("127.0.0.1:%d", ports[0])
	n1 := startMemberNode(t, "n1", ports[1], gossip)
	n1.tr.Handle(1, transport.HandlerFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	baseline := runtime.NumGoroutine()

	for i := range 12 {
		id := cluster.NodeID(fmt.Sprintf("c%d", i%3))
		port := freePorts(t, 1)[0]
		c := startMemberNode(t, id, port, "127.0.0.1:0", gossip)
		c.tr.Handle(1, transport.HandlerFunc(echo))
		waitLookup(t, n1.m, id, fmt.Sprintf("127.0.0.1:%d", port))
		_, err := n1.tr.Request(ctx, id, 1, nil)
		require.NoError(t, err, "round %d: n1 to %s", i, id)
		_, err = c.tr.Request(ctx, "n1", 1, nil)
		require.NoError(t, err, "round %d: %s to n1", i, id)
		require.NoError(t, c.m.Leave(waitLimit))
		c.crash()
		require.Eventually(t, func() bool {
			_, ok := n1.m.Lookup(id)
			return !ok
		}, waitLimit, 5*time.Millisecond, "round %d: %s leaves", i, id)
	}

	require.Eventually(t, func() bool {
		st := n1.tr.Stats()
		return len(st.Peers) == 0 && st.InboundConnections == 0
	}, waitLimit, 10*time.Millisecond, "n1's transport forgets the nodes that left: %+v", n1.tr.Stats().Peers)
	n1.m.mu.Lock()
	assert.Empty(t, n1.m.rc.failed, "members remembered for reconnection")
	assert.Empty(t, n1.m.claimed)
	assert.Zero(t, n1.m.queue.len())
	n1.m.mu.Unlock()
	// memberlist's probes come and go: wait for them. Eventually runs
	// the condition on a goroutine of its own: one more.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+1 }, waitLimit, 10*time.Millisecond,
		"goroutines: %d before", baseline)
}
