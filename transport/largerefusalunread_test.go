package transport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// cutGate is a relayFunc for relayProxy: while held, the bytes it is given
// are held back; cut throws them away, ends the connections that held
// some, and lets the bytes of the others (and of new ones) through.
type cutGate struct {
	mu   sync.Mutex
	held bool
	cuts chan struct{} // closed by cut
	n    atomic.Int64  // bytes held back
}

func newCutGate() *cutGate { return &cutGate{cuts: make(chan struct{})} }

func (g *cutGate) relay(_ int64, b []byte) ([]byte, bool) {
	g.mu.Lock()
	held, cuts := g.held, g.cuts
	g.mu.Unlock()
	if !held {
		return b, true
	}
	g.n.Add(int64(len(b)))
	<-cuts
	return nil, false
}

func (g *cutGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = true
}

func (g *cutGate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = false
	close(g.cuts)
}

// TestALargeRefusalTheSenderNeverReadIsCountedOnce: a receiver refuses a
// large message (here as too large for its MaxMessageSize, below its
// sender's) and counts it dropped as the refusal is written; the
// connection then ends before the sender read the refusal. The sender,
// which had written none of the message's payload, sends it again on its
// next connection. The message must still end in one counted outcome on
// each side: the receiver counts it dropped once, not once per
// connection it was begun on.
func TestALargeRefusalTheSenderNeverReadIsCountedOnce(t *testing.T) {
	const verb transport.Verb = 61
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 30 * time.Second // n1 hears nothing of n2's while held
		if i == 1 {
			cfg.Memory.MaxMessageSize = 1 << 20
		}
	})
	var received atomic.Int64
	c.Nodes[1].Handle(verb, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		received.Add(1)
		return nil, nil
	}))
	down := newCutGate()
	proxy := relayProxy(t, c.Nodes[1].Addr().String(), nil, down.relay)
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy}) // n1 reaches n2 through the proxy
	n1, n2, to := c.Nodes[0], c.Nodes[1], c.ID(1)
	sent := func() transport.ConnStats { return laneStats(t, n1, string(to), routing.Large) }
	got := func() transport.ConnStats { return laneStats(t, n2, string(c.ID(0)), routing.Large) }

	require.NoError(t, n1.Send(ctxTimeout(t, 10*time.Second), to, verb, make([]byte, 128<<10))) // the large lane's connection
	waitFor(t, 10*time.Second, "the first large message received", func() bool { return received.Load() == 1 })

	down.hold() // n2's refusal stays in the proxy
	require.NoError(t, n1.Send(ctxTimeout(t, 10*time.Second), to, verb, make([]byte, 2<<20)))
	waitFor(t, 10*time.Second, "the message refused, its refusal held", func() bool {
		return got().DroppedInbound[transport.ReasonTooLarge] == 1 && down.n.Load() > 0
	})
	down.cut()
	waitFor(t, 10*time.Second, "the sender's outcome", func() bool {
		return sent().Dropped[transport.ReasonTooLarge]+sent().Dropped[transport.ReasonConnectionReset] == 1
	})
	// A message sent after it on the lane's connection is read after it:
	// once it is in, the receiver has counted whatever it counts.
	require.NoError(t, n1.Send(ctxTimeout(t, 10*time.Second), to, verb, make([]byte, 128<<10)))
	waitFor(t, 10*time.Second, "the last large message received", func() bool { return received.Load() == 2 })

	in := got()
	var dropped uint64
	for _, n := range in.DroppedInbound {
		dropped += n
	}
	assert.Equal(t, uint64(1), dropped, "the refused message's outcomes at its receiver: %v", in.DroppedInbound)
	assert.Equal(t, uint64(2), in.MessagesReceived)
}
