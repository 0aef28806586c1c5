package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// laggingMembership is a Static whose watchers are told of changes only
// when the test says (flush), as cluster/memberlist tells them from its
// own goroutine, after its member map (Lookup) has changed: behind a slow
// watcher, events lag the map.
type laggingMembership struct {
	*cluster.Static
	mu      sync.Mutex
	pending []cluster.Event
	fns     []func(cluster.Event)
}

// newLaggingMembership returns a laggingMembership of members.
func newLaggingMembership(members ...cluster.Member) *laggingMembership {
	static := cluster.NewStatic(members...)
	lag := &laggingMembership{Static: static}
	static.Watch(lag.record)
	return lag
}

func (l *laggingMembership) Watch(fn func(cluster.Event)) (stop func()) {
	l.mu.Lock()
	l.fns = append(l.fns, fn)
	l.mu.Unlock()
	return func() {}
}

func (l *laggingMembership) record(ev cluster.Event) {
	l.mu.Lock()
	l.pending = append(l.pending, ev)
	l.mu.Unlock()
}

func (l *laggingMembership) flush() {
	l.mu.Lock()
	evs, fns := l.pending, l.fns
	l.pending = nil
	l.mu.Unlock()
	for _, ev := range evs {
		for _, fn := range fns {
			fn(ev)
		}
	}
}

// TestALeaveToldAfterTheMemberCameBackFailsNothing: n1 flaps — declared
// gone, then back at the same address — and only then does n2 send it a
// request; the Leave reaches n2's transport after, as memberlist delivers
// it behind a slow watcher. The request, sent to a member that the
// membership held before, while and after it ran, failed with
// ErrPeerLeft: n1 handled it, and a caller that retries on ErrPeerLeft
// would have run it twice.
func TestALeaveToldAfterTheMemberCameBackFailsNothing(t *testing.T) {
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"}), func(c *Config) {
		c.Security.AcceptUnknownPeers = true
	})
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	n1.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return m.Payload, nil
	}))
	n1.Handle(2, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil }))
	static := cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	lag := &laggingMembership{Static: static}
	static.Watch(lag.record)
	n2 := startNode(t, "n2", lag, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n2.Request(ctx, "n1", 2, []byte("warm"))
	require.NoError(t, err)

	// n1 flaps: the membership drops it and takes it back; the events wait.
	static.Remove("n1")
	static.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	_, ok := lag.Lookup("n1")
	require.True(t, ok)

	errs := make(chan error, 1)
	go func() {
		_, err := n2.Request(ctx, "n1", 1, []byte("after the rejoin"))
		errs <- err
	}()
	within(t, started, 5*time.Second, "the request's handler on n1")
	lag.flush() // Leave, then Join
	close(release)
	require.NoError(t, within(t, errs, 5*time.Second, "the request"), "a request sent to n1 after it rejoined")
}
