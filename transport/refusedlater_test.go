package transport_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestRefusalFailsOnlyWhatWasQueuedBeforeIt: a dial the peer refuses for
// good fails what is queued then, and only that. A message queued once
// the refusal had failed a request, and its caller had that failure in
// hand, waits for the next dial, as it would have had it come a moment
// later: it is not failed with the earlier dial's error. The peer
// refuses its first handshake (Refused) and accepts the next.
func TestRefusalFailsOnlyWhatWasQueuedBeforeIt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	failedFirst := make(chan struct{})
	queuedNext := make(chan struct{})
	dropped := make(chan transport.DroppedMessage, 4)
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.OnDropped = func(d transport.DroppedMessage) {
			dropped <- d
			if string(d.Payload) == "first" {
				// The writer fails the first request while its caller
				// queues the next message: hold it here until it has.
				close(failedFirst)
				<-queuedNext
			}
		}
	})
	c.Members.Add(cluster.Member{ID: "fussy", Addr: ln.Addr().String()})
	node := c.Nodes[0]

	delivered := make(chan string, 1)
	go func() {
		for first := true; ; first = false {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
			if err != nil {
				return
			}
			if _, err := wire.DecodeHello(raw); err != nil {
				return
			}
			if first {
				_, _ = conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Refused, Message: "not yet"}))
				conn.Close()
				continue
			}
			reply := wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion, Capabilities: wire.CapAcceptorID, Message: "fussy"})
			if _, err := conn.Write(wire.AppendFrameHeader(reply, wire.FrameBeat, 0)); err != nil {
				return
			}
			for {
				head := make([]byte, wire.FrameHeaderSize)
				if _, err := io.ReadFull(conn, head); err != nil {
					return
				}
				fh, err := wire.ParseFrameHeader(head, wire.DefaultMaxFramePayload)
				if err != nil {
					return
				}
				payload := make([]byte, fh.Length)
				if _, err := io.ReadFull(conn, payload); err != nil {
					return
				}
				if fh.Kind != wire.FrameBatch {
					continue
				}
				h, n, err := wire.DecodeHeader(payload, wire.DefaultMaxFramePayload)
				if err != nil {
					return
				}
				delivered <- string(payload[n : n+int(h.PayloadLength)])
				return
			}
		}
	}()

	ctx := ctxTimeout(t, 10*time.Second)
	_, err = node.Request(ctx, "fussy", verbEcho, []byte("first"))
	require.ErrorIs(t, err, transport.ErrRefused, "the first dial is refused")
	<-failedFirst
	assert.Equal(t, "first", string((<-dropped).Payload))
	require.NoError(t, node.Send(ctx, "fussy", verbEcho, []byte("next")))
	close(queuedNext)

	select {
	case got := <-delivered:
		assert.Equal(t, "next", got)
	case d := <-dropped:
		t.Fatalf("a message queued after the refusal was failed by it: %q, %v", d.Payload, d.Reason)
	case <-ctx.Done():
		t.Fatal("the message queued after the refusal never arrived")
	}
}
