package main

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// wedgingDialer dials on loopback, lets each connection write its
// handshake, then holds every later write until the connection is closed:
// the sender's lanes toward the peer are wedged for good.
type wedgingDialer struct{ net.Dialer }

func (d *wedgingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &wedgedConn{Conn: c, closed: make(chan struct{})}, nil
}

type wedgedConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	once   sync.Once
	closed chan struct{}
}

func (c *wedgedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	first := c.writes == 1
	c.mu.Unlock()
	if first {
		return c.Conn.Write(b) // the handshake
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *wedgedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// A pair lane wedged for good must be found stuck however short the
// workload: here it is shorter than the grace and the bound together, so
// the lane can only be judged after the workload has stopped. It once was
// not judged then: the run ended, closing the nodes failed what the lane
// held (counted, so lost=0), and the verdict was stuck=0.
func TestWedgeAtTheEndIsStuck(t *testing.T) {
	r, stdout := runTwoThroughN1Dialer(t, &wedgingDialer{}, "-duration", "1s", "-rate", "20")
	require.NotZero(t, r.Summary.Stuck, "n1's lanes to n2 never moved a message:\n%s", stdout.String())
	require.Equal(t, 1, verdict(r, io.Discard))
	for _, p := range r.Stuck.Pairs {
		require.Equal(t, "n1->n2", p.From+"->"+p.To, p.name())
	}
	// The probes after the writes moved n2's lanes to n1, not n1's to n2.
	require.Equal(t, []string{"n1->n2 urgent", "n1->n2 small", "n1->n2 large"}, r.Stuck.StillAtEnd)
	require.Equal(t, 3, *r.Stuck.MovingAtEnd)
}
