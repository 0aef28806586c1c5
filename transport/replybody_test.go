package transport_test

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestAReplyTooShortForItsChecksumIsRefusedForGood: an acceptor whose
// reply's body_len (2) cannot even hold the checksum speaks no
// internode, as one with a bad magic or checksum, which the dial refuses
// for good. Its ErrMalformed was taken for a read that failed: a request
// failed with ErrConnectionReset, and the lane dialled it again and again.
func TestAReplyTooShortForItsChecksumIsRefusedForGood(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			go func() {
				defer conn.Close()
				if _, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize)); err != nil {
					return
				}
				reply := binary.BigEndian.AppendUint32(nil, wire.Magic)
				reply = binary.BigEndian.AppendUint16(reply, 2) // body_len below the checksum's 4
				_, _ = conn.Write(append(reply, 0, 0))
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = time.Millisecond, 2*time.Millisecond
	})
	c.Members.Add(cluster.Member{ID: "odd", Addr: ln.Addr().String()})
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), "odd", verbEcho, []byte("x"))
	require.ErrorIs(t, err, transport.ErrRefused)
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), "odd", verbEcho, []byte("one-way")))
	waitFor(t, 5*time.Second, "the one-way message failed as refused", func() bool {
		return c.Nodes[0].Stats().Total().Dropped[transport.ReasonRefused] == 2
	})
	assert.LessOrEqual(t, dials.Load(), int64(3), "dialled again and again")
}
