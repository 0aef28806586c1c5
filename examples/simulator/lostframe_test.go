package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// frameDroppingDialer dials on loopback, lets each connection write its
// handshake, then drops the nth batch frame the connection writes, whole:
// the receiver reads a well-formed stream without the frame's messages,
// which their sender counted written.
type frameDroppingDialer struct {
	net.Dialer
	nth int
}

func (d *frameDroppingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &frameDroppingConn{Conn: c, nth: d.nth}, nil
}

type frameDroppingConn struct {
	net.Conn
	nth int

	mu         sync.Mutex
	handshaken bool
	header     []byte // of the frame being written, until it is whole
	left       int    // payload bytes of the frame being written still to come
	dropping   bool   // the frame being written is dropped
	batches    int
}

func (c *frameDroppingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.handshaken {
		c.handshaken = true
		return c.Conn.Write(b)
	}
	n := len(b)
	for len(b) > 0 {
		if c.left == 0 { // a frame header
			take := min(wire.FrameHeaderSize-len(c.header), len(b))
			c.header, b = append(c.header, b[:take]...), b[take:]
			if len(c.header) < wire.FrameHeaderSize {
				break
			}
			if wire.FrameKind(c.header[4]) == wire.FrameBatch {
				c.batches++
			}
			c.dropping = wire.FrameKind(c.header[4]) == wire.FrameBatch && c.batches == c.nth
			if !c.dropping {
				if _, err := c.Conn.Write(c.header); err != nil {
					return 0, err
				}
			}
			c.left, c.header = int(binary.BigEndian.Uint32(c.header[0:4])), c.header[:0]
			continue
		}
		take := min(c.left, len(b))
		if !c.dropping {
			if _, err := c.Conn.Write(b[:take]); err != nil {
				return 0, err
			}
		}
		c.left, b = c.left-take, b[take:]
	}
	return n, nil
}

// Messages the transport wrote and the network lost on a connection that
// stayed up must count as lost: their sender counted the digests written
// and the requests timed out, both outcomes in the senders' own accounts,
// and the run once ended lost=0 stuck=0.
func TestMessagesLostOnTheWireAreLost(t *testing.T) {
	r, stdout := runTwoThroughN1Dialer(t, &frameDroppingDialer{nth: 20}, "-duration", "2s", "-rate", "50")
	require.NotZero(t, r.Summary.Lost, "n1 lost a batch frame on each of its connections to n2:\n%s", stdout.String())
	require.Equal(t, 1, verdict(r, io.Discard))
	require.Contains(t, stdout.String(), "n1->n2 small", "the report names the pair lane")
}

// runTwoThroughN1Dialer runs the simulator with two nodes, n1 dialling
// through d, with args besides a 300 ms timeout and a stuck-after of 1 s.
func runTwoThroughN1Dialer(t *testing.T, d transport.Dialer, args ...string) (*report, *bytes.Buffer) {
	t.Helper()
	testDialer = func(from cluster.NodeID) transport.Dialer {
		if from == "n1" {
			return d
		}
		return nil
	}
	t.Cleanup(func() { testDialer = nil })
	o, err := parseOptions(append([]string{"-nodes", "2", "-timeout", "300ms", "-stuck-after", "1s"}, args...), io.Discard)
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	r, err := run(t.Context(), o, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	return r, &stdout
}
