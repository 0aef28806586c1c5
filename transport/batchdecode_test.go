package transport_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// badFrameNode returns a two-node cluster whose second node takes
// compressed frames on the small lane from anyone, and a raw connection
// compressed frames may be sent to.
func badFrameNode(t *testing.T) (client, node *transport.Transport) {
	t.Helper()
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Lanes.Compression[routing.Small] = transport.CompressionOn
	})
	handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	return c.Nodes[0], c.Nodes[1]
}

// TestCutInsideACompleteFrameIsMalformed: bytes cut short inside a frame
// whose length the header gave and whose bytes all arrived — a compressed
// block with no room for its length, or a message header that runs past
// its batch — are not the wire format: the connection is closed and
// counted as BadInputMalformed. BadInputTruncated is "a frame cut short
// by the connection's end", which none of these is; errCompressedBatch
// says as much ("Within a frame whose length is known: the block is cut")
// and means it to be malformed. The node loses nothing else: its other
// peers' requests are answered and nothing stays held.
func TestCutInsideACompleteFrameIsMalformed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  wire.FrameKind
		body  []byte
		reply bool
	}{
		{"compressed, empty block", wire.FrameBatchS2, nil, true},
		{"compressed, length cut", wire.FrameBatchS2, []byte{0x80}, true},
		{"batch, message header cut", wire.FrameBatch, oneWayMessage(1, []byte("x"))[:3], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, node := badFrameNode(t)
			conn := rawConn(t, node)
			hello := validHello(routing.Small)
			hello.Capabilities = wire.CapBatchS2
			reply := handshake(t, conn, hello)
			require.Equal(t, wire.Accepted, reply.Reason)
			require.NotZero(t, reply.Capabilities&wire.CapBatchS2)

			frame := append(wire.AppendFrameHeader(nil, tc.kind, 0, tc.body), tc.body...)
			_, err := conn.Write(frame)
			require.NoError(t, err)
			closedByPeer(t, conn)
			countedMalformedAndServing(t, client, node)
			waitFor(t, 5*time.Second, "nothing held", func() bool { return node.Stats().InboundHeld == 0 })
		})
	}
}

// TestEmptyBatchFrameIsMalformed: a FrameBatch payload is "one or more
// whole messages" (wire/doc.go), as a FrameBatchS2's batch is 1 byte or
// more ("empty compressed batch" is malformed): an empty one is not the
// wire format — no writer sends one — so the node closes the connection
// and counts it as malformed, rather than taking it as nothing at all.
func TestEmptyBatchFrameIsMalformed(t *testing.T) {
	client, node := badFrameNode(t)
	conn := rawConn(t, node)
	reply := handshake(t, conn, validHello(routing.Small))
	require.Equal(t, wire.Accepted, reply.Reason)

	_, err := conn.Write(wire.AppendFrameHeader(nil, wire.FrameBatch, 0))
	require.NoError(t, err)
	// Well within Keepalive (5 s), after which the node would close a
	// silent connection anyway.
	require.NoError(t, conn.SetDeadline(time.Now().Add(3*time.Second)))
	closedByPeer(t, conn)
	waitFor(t, 5*time.Second, "the connection counted", func() bool {
		return node.Stats().InboundMalformed > 0
	})
	st := node.Stats()
	assert.Equal(t, uint64(1), st.BadInput[transport.BadInputMalformed], "malformed: %v", st.BadInput)

	resp, err := client.Request(ctxTimeout(t, 5*time.Second), node.NodeID(), verbEcho, []byte("still here"))
	require.NoError(t, err)
	assert.Equal(t, []byte("still here"), resp)
	waitFor(t, 5*time.Second, "nothing held", func() bool { return node.Stats().InboundHeld == 0 })
}

// fakeResponder accepts one connection on ln, handshakes as an acceptor
// agreeing what the node offers of caps, reads frames until the first
// batch (a request) and answers it with the frame answer makes of the
// request's ID. It then keeps the connection open until stop.
func fakeResponder(t *testing.T, ln net.Listener, caps wire.Capabilities, answer func(id uint64) []byte, stop <-chan struct{}) {
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
	hello, err := wire.DecodeHello(raw)
	if err != nil {
		return
	}
	if _, err := conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion,
		Capabilities: hello.Capabilities & caps})); err != nil {
		return
	}
	r := bufio.NewReader(conn)
	var hdr [wire.FrameHeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		if err != nil {
			return
		}
		payload := make([]byte, fh.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		if fh.Kind == wire.FrameBatchS2 {
			n, err := wire.BatchS2Len(payload, wire.DefaultMaxFramePayload)
			if err != nil {
				return
			}
			body := make([]byte, n)
			if wire.DecodeBatchS2(body, payload) != nil {
				return
			}
			payload, fh.Kind = body, wire.FrameBatch
		}
		if fh.Kind != wire.FrameBatch {
			continue
		}
		h, _, err := wire.DecodeHeader(payload, wire.DefaultMaxFramePayload)
		if err != nil {
			return
		}
		if _, err := conn.Write(answer(h.ID)); err != nil {
			return
		}
		break
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	<-stop
}

// TestResponseBatchIsCheckedWhole: a batch frame of responses is read
// with a FrameBatch's rules (wire/doc.go: "A batch with any malformed
// message (or more than MaxBatchMessages) is malformed as a whole: none
// of its messages reaches a handler, and the connection is closed"),
// compressed or not. The requester must not complete a call from a batch
// it then finds malformed: the response was part of bad input, and the
// caller is told its connection broke (ErrConnectionReset), as it is for
// every other request on that connection.
func TestResponseBatchIsCheckedWhole(t *testing.T) {
	response := func(id uint64, payload []byte) []byte {
		h := wire.Header{Flags: wire.FlagResponse, ID: id, Verb: uint32(verbEcho), PayloadLength: uint32(len(payload))}
		return append(wire.AppendHeader(nil, &h), payload...)
	}
	for _, tc := range []struct {
		name string
		body func(id uint64) []byte
	}{
		{"well formed", func(id uint64) []byte { return response(id, []byte("from a good batch")) }},
		{"response then a cut header", func(id uint64) []byte {
			return append(response(id, []byte("from a bad batch")), response(id+1, nil)[:3]...)
		}},
		{"response then an overrun", func(id uint64) []byte {
			bad := response(id+1, make([]byte, 10))
			return append(response(id, []byte("from a bad batch")), bad[:len(bad)-1]...)
		}},
		{"response among too many", func(id uint64) []byte {
			var body []byte
			for i := range wire.MaxBatchMessages {
				body = append(body, response(id+1+uint64(i), nil)...)
			}
			return append(body, response(id, []byte("from a bad batch"))...)
		}},
	} {
		for _, kind := range []wire.FrameKind{wire.FrameBatch, wire.FrameBatchS2} {
			t.Run(tc.name+"/"+kind.String(), func(t *testing.T) {
				c := newCluster(t, 1, nil)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				defer ln.Close()
				c.Members.Add(cluster.Member{ID: "fake", Addr: ln.Addr().String()})
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					fakeResponder(t, ln, wire.CapBatchS2, func(id uint64) []byte {
						body := tc.body(id)
						if kind == wire.FrameBatchS2 {
							body = wire.AppendBatchS2(nil, body)
						}
						return append(wire.AppendFrameHeader(nil, kind, 0, body), body...)
					}, stop)
				}()
				defer func() { close(stop); <-done }()

				resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), "fake", verbEcho, []byte("hi"))
				if tc.name == "well formed" {
					require.NoError(t, err)
					assert.Equal(t, []byte("from a good batch"), resp)
					return
				}
				assert.ErrorIs(t, err, transport.ErrConnectionReset, "got response %q", resp)
			})
		}
	}
}

// TestAMalformedBatchActsOnNoneOfItsMessages: a batch frame with a bad
// message is malformed as a whole (wire/doc.go), whatever comes before the
// bad one. A cancel ahead of it does not stop the request it names (which
// runs on another of the peer's connections), and a message too large
// ahead of it is neither refused nor counted on its own: the frame is
// counted once, as malformed, and its connection closed.
func TestAMalformedBatchActsOnNoneOfItsMessages(t *testing.T) {
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Memory.MaxMessageSize = 1 << 10
	})
	node := c.Nodes[0]
	started := make(chan context.Context, 1)
	node.Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		started <- ctx
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	small := dialAs(node.Addr().String(), "raw", routing.Small)
	require.NotNil(t, small)
	defer small.Close()
	_, err := small.Write(requestFrame(7, verbBlock, []byte("x")))
	require.NoError(t, err)
	var running context.Context
	select {
	case running = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request 7 did not start")
	}

	urgent := dialAs(node.Addr().String(), "raw", routing.Urgent)
	require.NotNil(t, urgent)
	defer urgent.Close()
	body := wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagCancel, ID: 7, Verb: uint32(verbBlock)})
	big := make([]byte, 2<<10) // above MaxMessageSize
	body = wire.AppendHeader(body, &wire.Header{Flags: wire.FlagExpectsResponse, ID: 8, Verb: uint32(verbBlock), PayloadLength: uint32(len(big))})
	body = append(body, big...)
	// A response, which an initiator never sends.
	body = wire.AppendHeader(body, &wire.Header{Flags: wire.FlagResponse, ID: 9, Verb: uint32(verbBlock)})
	_, err = urgent.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, body), body...))
	require.NoError(t, err)
	closedByPeer(t, urgent)
	waitFor(t, 5*time.Second, "the frame counted as malformed", func() bool {
		return node.Stats().InboundMalformed > 0
	})
	require.NoError(t, running.Err(), "the malformed frame's cancel stopped request 7")
	total := node.Stats().Total()
	require.Zero(t, total.DroppedInbound[transport.ReasonTooLarge], "the malformed frame's message was refused as too large")
	require.Zero(t, total.MessagesReceived-1, "only request 7 was received: %d", total.MessagesReceived)
}

// countedMalformedAndServing checks that node counted the connection it
// closed as one malformed input, not a truncated one, and that it still
// answers client.
func countedMalformedAndServing(t *testing.T, client, node *transport.Transport) {
	t.Helper()
	waitFor(t, 5*time.Second, "the connection counted", func() bool {
		return node.Stats().InboundMalformed > 0
	})
	st := node.Stats()
	assert.Equal(t, uint64(1), st.BadInput[transport.BadInputMalformed], "malformed: %v", st.BadInput)
	assert.Zero(t, st.BadInput[transport.BadInputTruncated], "truncated: %v", st.BadInput)
	resp, err := client.Request(ctxTimeout(t, 5*time.Second), node.NodeID(), verbEcho, []byte("still here"))
	require.NoError(t, err)
	assert.Equal(t, []byte("still here"), resp)
}
