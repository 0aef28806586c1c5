package transport_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// stallingDialer dials normally, and holds the reads of the first of its
// connections that has read past after until release closes: a requester
// that stops reading its back channel with a large response half read.
type stallingDialer struct {
	net.Dialer
	after   int64
	once    sync.Once
	stalled chan struct{} // closed when a read is held
	release chan struct{}
	held    atomic.Pointer[stallingConn]
}

func (d *stallingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &stallingConn{Conn: conn, d: d}, nil
}

type stallingConn struct {
	net.Conn
	d    *stallingDialer
	read atomic.Int64
}

func (c *stallingConn) Read(p []byte) (int, error) {
	if c.read.Load() >= c.d.after && (c.d.held.Load() == c || c.d.held.CompareAndSwap(nil, c)) {
		c.d.once.Do(func() { close(c.d.stalled) })
		<-c.d.release
	}
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestLargeResponseGivenUpIsRefused: a requester whose caller gave up on
// a large response it is receiving refuses the rest of it: the responder
// withdraws it, and its bytes stop, rather than all of them crossing the
// network for no one. The requester read all 64 MiB of it, and dropped it
// only once it was whole; the responder counted it sent.
func TestLargeResponseGivenUpIsRefused(t *testing.T) {
	const (
		verbBigAnswer   transport.Verb = 142
		verbSmallAnswer transport.Verb = 143
		size                           = 64 << 20
	)
	d := &stallingDialer{after: 1 << 20, stalled: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(d.release) }) }
	t.Cleanup(releaseAll)
	roomy := transport.Limits{PerConnection: 2 * size, PerPeer: 2 * size, Node: 4 * size}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = size + size/4
		cfg.Memory.Inbound, cfg.Memory.Outbound = roomy, roomy
		if i == 0 {
			cfg.Dialer = d
		}
	})
	requester, responder := c.Nodes[0], c.Nodes[1]
	answer := make([]byte, size) // shared: a large response is not copied
	responder.Handle(verbBigAnswer, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return answer, nil
	}))
	responder.Handle(verbSmallAnswer, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return []byte("small"), nil
	}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := requester.Request(ctx, c.ID(1), verbBigAnswer, []byte("read"))
		errc <- err
	}()
	within(t, d.stalled, 10*time.Second, "the response half read")
	cancel()
	require.ErrorIs(t, within(t, errc, 10*time.Second, "the cancelled request"), context.Canceled)
	releaseAll()

	sent := func() transport.ConnStats { return laneStats(t, responder, string(c.ID(0)), routing.Small) }
	waitFor(t, 20*time.Second, "the response's outcome at the responder", func() bool {
		st := sent()
		return st.MessagesSent+st.Dropped[transport.ReasonExpired] == 1
	})
	st := sent()
	assert.Zero(t, st.MessagesSent, "the response was not written whole")
	assert.Equal(t, uint64(1), st.Dropped[transport.ReasonExpired], "it was withdrawn, nobody waiting for it: %v", st.Dropped)
	waitFor(t, 10*time.Second, "the requester's count", func() bool {
		return laneStats(t, requester, string(c.ID(1)), routing.Small).DroppedInbound[transport.ReasonExpired] == 1
	})
	// A small request's answer comes behind the response's withdrawal on
	// the same connection: the requester has discarded what was left of
	// the response in the sockets' buffers when it arrives.
	_, err := requester.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbSmallAnswer, []byte("read"))
	require.NoError(t, err)
	// What the sockets' buffers held when the refusal went, and no more.
	t.Logf("the requester read %d bytes of the %d-byte response's connection", d.held.Load().read.Load(), size)
	assert.Less(t, d.held.Load().read.Load(), int64(size/2), "the requester read the response's bytes after refusing it")
	assert.Zero(t, requester.Stats().InboundHeld, "the response's room is given back")
}
