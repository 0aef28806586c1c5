package transport_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// peerHealth returns node n's view of peer id.
func peerHealth(t testing.TB, n *transport.Transport, id cluster.NodeID) transport.PeerHealth {
	t.Helper()
	h := n.Health()
	p, ok := h.Peer(id)
	require.True(t, ok, "%s is a member", id)
	return p
}

// gaugeWhere returns the value of the float64 gauge's point whose
// attributes include every key=value given, and whether there is one.
func gaugeWhere(data metricdata.Aggregation, kv ...string) (float64, bool) {
	g, ok := data.(metricdata.Gauge[float64])
	if !ok {
		return 0, false
	}
	for _, p := range g.DataPoints {
		if hasAttributes(p.Attributes, kv...) {
			return p.Value, true
		}
	}
	return 0, false
}

// A peer that is up shows connected and ready; once it stops, the lane's
// failures count up and it backs off until a stated time; when it returns
// the lane connects again and the failures reset. The metrics say the
// same.
func TestHealthFollowsAPeerThatStopsAndReturns(t *testing.T) {
	reader := metric.NewManualReader()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 400 * time.Millisecond
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = minBackoff, maxBackoff
		if i == 0 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	var received sync.WaitGroup
	handleAll(c, verbData, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		received.Done()
		return nil, nil
	})
	n1, n2 := c.Nodes[0], c.ID(1)

	before := time.Now()
	_, err := n1.Request(ctxTimeout(t, 5*time.Second), n2, verbEcho, []byte("ping"))
	require.NoError(t, err)
	// The writer notes the write once it returns, maybe after the
	// response was read.
	waitFor(t, 5*time.Second, "the write is noted", func() bool {
		return !peerHealth(t, n1, n2).Lanes[routing.Small].LastWrite.IsZero()
	})
	h := n1.Health()
	require.Len(t, h.Peers, 1)
	assert.Equal(t, 2, h.Members)
	assert.Equal(t, 1, h.Up)
	assert.True(t, h.Ready(transport.ReadyAll))
	assert.True(t, h.Ready(transport.ReadyQuorum))
	assert.True(t, n1.Ready(transport.ReadyAll))
	p := h.Peers[0]
	assert.Equal(t, transport.PeerUp, p.Status)
	small := p.Lanes[routing.Small]
	assert.Equal(t, transport.LaneConnected, small.State)
	assert.Equal(t, uint32(0), small.ConsecutiveFailures)
	assert.False(t, small.Since.Before(before))
	assert.False(t, small.LastWrite.Before(before), "the request's write is noted")
	assert.False(t, small.LastRead.Before(before), "the response came back on the lane's connection")
	assert.Equal(t, transport.LaneIdle, p.Lanes[routing.Large].State, "never dialled")
	assert.True(t, p.Lanes[routing.Large].Since.IsZero())

	m := collect(t, reader)
	assert.Equal(t, int64(1), sumWhere(m["internode.peer.connected"], "peer", "n2", "lane", "small"))
	assert.Equal(t, int64(0), sumWhere(m["internode.peer.connected"], "peer", "n2", "lane", "large"))
	assert.Equal(t, int64(1), sumWhere(m["internode.peer.status"], "peer", "n2", "status", "up"))
	assert.Equal(t, int64(0), sumWhere(m["internode.peer.status"], "peer", "n2", "status", "down"))
	assert.Equal(t, int64(1), sumWhere(m["internode.node.ready"], "rule", "all"))
	assert.Equal(t, int64(1), sumWhere(m["internode.node.ready"], "rule", "quorum"))
	sinceWrite, ok := gaugeWhere(m["internode.peer.since_last_write"], "peer", "n2", "lane", "small")
	assert.True(t, ok)
	assert.GreaterOrEqual(t, sinceWrite, 0.0)
	_, ok = gaugeWhere(m["internode.peer.since_last_write"], "peer", "n2", "lane", "large")
	assert.False(t, ok, "no write on the large lane: no point")

	// n2 stops: n1 sees the connection end. One-way messages sent then
	// wait for n2, so n1's small lane keeps dialling, and is refused.
	require.NoError(t, c.Nodes[1].Close())
	waitFor(t, 5*time.Second, "the loss is seen", func() bool {
		return peerHealth(t, n1, n2).Lanes[routing.Small].ConsecutiveFailures == 1
	})
	small = peerHealth(t, n1, n2).Lanes[routing.Small]
	assert.NotEqual(t, transport.LaneConnected, small.State)
	assert.Contains(t, small.LastError, "connection lost")
	received.Add(3)
	for range 3 {
		require.NoError(t, n1.Send(ctxTimeout(t, 30*time.Second), n2, verbData, []byte("wait")))
	}
	waitFor(t, 10*time.Second, "three failures, backing off", func() bool {
		l := peerHealth(t, n1, n2).Lanes[routing.Small]
		return l.ConsecutiveFailures >= 3 && l.State == transport.LaneBackoff
	})
	h = n1.Health()
	p = h.Peers[0]
	small = p.Lanes[routing.Small]
	assert.Equal(t, transport.PeerDown, p.Status)
	assert.Equal(t, 1, h.Down)
	assert.False(t, h.Ready(transport.ReadyAll))
	assert.False(t, h.Ready(transport.ReadyQuorum), "one of two is not a majority")
	assert.True(t, small.RetryAt.After(small.Since), "the next attempt is after the backoff began")
	assert.LessOrEqual(t, small.RetryAt.Sub(small.Since), maxBackoff)
	assert.Contains(t, small.LastError, "connection refused")
	assert.False(t, small.LastErrorAt.IsZero())

	m = collect(t, reader)
	assert.GreaterOrEqual(t, sumWhere(m["internode.peer.consecutive_failures"], "peer", "n2", "lane", "small"), int64(3))
	assert.Equal(t, int64(0), sumWhere(m["internode.peer.connected"], "peer", "n2", "lane", "small"))
	assert.Equal(t, int64(1), sumWhere(m["internode.peer.status"], "peer", "n2", "status", "down"))
	assert.Equal(t, int64(0), sumWhere(m["internode.node.ready"], "rule", "all"))
	assert.Equal(t, int64(0), sumWhere(m["internode.node.ready"], "rule", "quorum"))

	// n2 returns on the same address: the lane connects again, the waiting
	// messages arrive, the failures reset.
	_, err = c.Restart(1)
	require.NoError(t, err)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		received.Done()
		return nil, nil
	}))
	waitFor(t, 10*time.Second, "connected again", func() bool {
		return peerHealth(t, n1, n2).Lanes[routing.Small].State == transport.LaneConnected
	})
	received.Wait()
	h = n1.Health()
	small = h.Peers[0].Lanes[routing.Small]
	assert.Equal(t, transport.PeerUp, h.Peers[0].Status)
	assert.Equal(t, uint32(0), small.ConsecutiveFailures)
	assert.Contains(t, small.LastError, "connection refused", "the last error stays")
	assert.True(t, h.Ready(transport.ReadyAll))

	m = collect(t, reader)
	assert.Equal(t, int64(0), sumWhere(m["internode.peer.consecutive_failures"], "peer", "n2", "lane", "small"))
	assert.Equal(t, int64(1), sumWhere(m["internode.peer.connected"], "peer", "n2", "lane", "small"))
	assert.Equal(t, int64(1), sumWhere(m["internode.node.ready"], "rule", "all"))
}

// silentListener accepts connections and never says a word (a hung
// process, an address reused). It returns its address and a signal for
// each connection accepted (dropped when no one takes it).
func silentListener(t *testing.T) (string, <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), accepted
}

// A made-up member whose address accepts but never answers shows a lane
// dialling, then failing its handshakes; a member never contacted is
// unknown; a quorum still holds while a majority is up.
func TestHealthOfSilentAndUnknownPeers(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Handshake = 100 * time.Millisecond
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	n1 := c.Nodes[0]
	addr, _ := silentListener(t)
	c.Members.Add(cluster.Member{ID: "silent", Addr: addr})
	c.Members.Add(cluster.Member{ID: "unused", Addr: closedAddr(t)})

	_, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.NoError(t, err)
	h := n1.Health()
	assert.Equal(t, 4, h.Members)
	require.Len(t, h.Peers, 3)
	assert.Equal(t, []cluster.NodeID{"n2", "silent", "unused"},
		[]cluster.NodeID{h.Peers[0].Peer, h.Peers[1].Peer, h.Peers[2].Peer}, "sorted by ID")
	unused, _ := h.Peer("unused")
	assert.Equal(t, transport.PeerUnknown, unused.Status)
	for _, l := range unused.Lanes {
		assert.Equal(t, transport.LaneIdle, l.State)
		assert.True(t, l.Since.IsZero())
	}
	assert.Equal(t, 1, h.Up)
	assert.Equal(t, 2, h.Unknown)
	assert.False(t, h.Ready(transport.ReadyAll), "unknown peers are not up")
	assert.False(t, h.Ready(transport.ReadyQuorum), "2 of 4 is not a majority")

	require.NoError(t, n1.Send(ctxTimeout(t, 30*time.Second), "silent", verbData, []byte("never")))
	waitFor(t, 5*time.Second, "the silent peer's lane dials", func() bool {
		return peerHealth(t, n1, "silent").Lanes[routing.Small].State == transport.LaneDialing
	})
	waitFor(t, 10*time.Second, "two failed handshakes", func() bool {
		return peerHealth(t, n1, "silent").Lanes[routing.Small].ConsecutiveFailures >= 2
	})
	silent := peerHealth(t, n1, "silent")
	assert.Equal(t, transport.PeerDown, silent.Status)
	assert.Contains(t, silent.Lanes[routing.Small].LastError, "timeout")
	assert.True(t, silent.Lanes[routing.Small].LastWrite.IsZero(), "nothing was ever written")
	assert.True(t, silent.Lanes[routing.Small].LastRead.IsZero(), "nothing was ever read")
	h = n1.Health()
	assert.Equal(t, 1, h.Down)

	// With "unused" gone from the membership, n1, n2 of three is a quorum.
	c.Members.Remove("unused")
	h = n1.Health()
	assert.Equal(t, 3, h.Members)
	assert.True(t, h.Ready(transport.ReadyQuorum))
	assert.False(t, h.Ready(transport.ReadyAll))
}

// A lane closed for being idle is idle, not failing: the peer stays up.
func TestHealthOfALaneClosedForIdleness(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Idle = 50 * time.Millisecond
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the lane closes", func() bool {
		return peerHealth(t, c.Nodes[0], c.ID(1)).Lanes[routing.Small].State == transport.LaneIdle
	})
	p := peerHealth(t, c.Nodes[0], c.ID(1))
	assert.Equal(t, transport.PeerUp, p.Status)
	assert.Equal(t, uint32(0), p.Lanes[routing.Small].ConsecutiveFailures)
	assert.False(t, p.Lanes[routing.Small].Since.IsZero())
	assert.Empty(t, p.Lanes[routing.Small].LastError)
}

// A closed transport is never ready.
func TestHealthOfAClosedTransport(t *testing.T) {
	c := newCluster(t, 1, nil)
	require.True(t, c.Nodes[0].Ready(transport.ReadyAll), "alone, with no peer")
	require.NoError(t, c.Nodes[0].Close())
	h := c.Nodes[0].Health()
	assert.True(t, h.Closed)
	assert.False(t, h.Ready(transport.ReadyAll))
	assert.False(t, h.Ready(transport.ReadyQuorum))
}

// BenchmarkHealth measures one Health call on a node with two connected
// peers: what a readiness probe or a metrics collection costs.
func BenchmarkHealth(b *testing.B) {
	c := newCluster(b, 3, nil)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil })
	for i := 1; i < 3; i++ {
		if _, err := c.Nodes[0].Request(ctxTimeout(b, 5*time.Second), c.ID(i), verbEcho, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if h := c.Nodes[0].Health(); h.Up != 2 {
			b.Fatalf("%d up", h.Up)
		}
	}
}

// holdingDialer dials normally, but holds every dial after the first
// until release closes: a lane's redial, caught in progress.
type holdingDialer struct {
	mu      sync.Mutex
	dials   int
	release chan struct{}
	held    chan struct{} // closed when the first held dial waits
}

func (d *holdingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials++
	first := d.dials == 1
	if d.dials == 2 {
		close(d.held)
	}
	d.mu.Unlock()
	if !first {
		select {
		case <-d.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

// A lane closed for being idle leaves its peer up; the message that
// redials it must not turn the peer unknown — "never tried" — while the
// dial runs: this node has talked to it, nothing failed, and a readiness
// probe (ReadyAll) would see the node flap out of ready at every redial.
func TestHealthOfALaneRedialledAfterIdlenessIsUp(t *testing.T) {
	d := &holdingDialer{release: make(chan struct{}), held: make(chan struct{})}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Idle = 50 * time.Millisecond
		if i == 0 {
			cfg.Dialer = d
		}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	n1, n2 := c.Nodes[0], c.ID(1)
	_, err := n1.Request(ctxTimeout(t, 5*time.Second), n2, verbEcho, nil)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the lane closes", func() bool {
		return peerHealth(t, n1, n2).Lanes[routing.Small].State == transport.LaneIdle
	})
	require.Equal(t, transport.PeerUp, peerHealth(t, n1, n2).Status)

	done := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), n2, verbEcho, nil)
		done <- err
	}()
	select {
	case <-d.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the lane did not redial")
	}
	waitFor(t, 5*time.Second, "the lane dials", func() bool {
		return peerHealth(t, n1, n2).Lanes[routing.Small].State == transport.LaneDialing
	})
	p := peerHealth(t, n1, n2)
	h := n1.Health()
	close(d.release)
	assert.Equal(t, transport.PeerUp, p.Status, "redialling after idleness: %+v", p.Lanes[routing.Small])
	assert.True(t, h.Ready(transport.ReadyAll), "ready while a lane redials after idleness")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request after the redial did not complete")
	}
}
