package transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// rejectingNode starts a node under OverloadReject whose 256 KiB of
// inbound room a held one-way message fills, so that every batch frame
// of more than 4 KiB after it is rejected; keepalive, when not zero,
// replaces the minute it is given otherwise.
func rejectingNode(t *testing.T, keepalive time.Duration) *transport.Transport {
	t.Helper()
	if keepalive == 0 {
		keepalive = time.Minute
	}
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Memory.MaxMessageSize = 250 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.InboundOverload = transport.OverloadReject
		cfg.Timeouts.Keepalive = keepalive
	})
	node := c.Nodes[0]
	const verbHold transport.Verb = 231
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	node.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		select {
		case <-gate:
		case <-ctx.Done(): // Close
		}
		return nil, nil
	}))
	filler := dialAs(node.Addr().String(), "filler", routing.Small)
	require.NotNil(t, filler)
	t.Cleanup(func() { filler.Close() })
	fill := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbHold), PayloadLength: 250 << 10})
	fill = append(fill, make([]byte, 250<<10)...)
	_, err := filler.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, fill), fill...))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the node full", func() bool { return node.Stats().InboundHeld >= 256<<10 })
	return node
}

// dialS2As is dialAs with compressed batches agreed (wire.CapBatchS2).
func dialS2As(t *testing.T, addr, id string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	hello := validHello(routing.Small)
	hello.Node = id
	hello.Capabilities = wire.CapBatchS2
	reply := handshake(t, conn, hello)
	require.Equal(t, wire.Accepted, reply.Reason, "connection %s", id)
	require.NotZero(t, reply.Capabilities&wire.CapBatchS2, "compressed batches agreed")
	return conn, bufio.NewReader(conn)
}

// requestsS2Frame is a compressed batch frame of requests of verbEcho,
// one for each payload, numbered from id up.
func requestsS2Frame(id uint64, payloads ...[]byte) []byte {
	var body []byte
	for i, p := range payloads {
		body = wire.AppendHeader(body, &wire.Header{Flags: wire.FlagExpectsResponse, ID: id + uint64(i), Verb: uint32(verbEcho), PayloadLength: uint32(len(p))})
		body = append(body, p...)
	}
	block := wire.AppendBatchS2(nil, body)
	return append(wire.AppendFrameHeader(nil, wire.FrameBatchS2, 0, block), block...)
}

// TestRejectedCompressedFramesTrickledInHoldABoundedShare: under
// OverloadReject a compressed batch frame that finds no room is read only
// to be rejected. Its block cannot be decoded in pieces, as a plain
// frame's bytes are skipped (rejectBatch), so the reader held the whole
// block (up to 256 KiB) for as long as the peer took to send it, and then
// the decoded batch, counted against no limit: peers that trickle such
// frames on many connections held about half a MiB each, some 2 GiB at
// MaxConns 4096. Sixty-four connections each send the start of a
// compressed frame of 200 KiB (incompressible) the node cannot take; the
// node's Go heap must grow by much less than the sum of those frames, and
// each request must still be refused with ErrOverloaded once its frame
// has come whole.
func TestRejectedCompressedFramesTrickledInHoldABoundedShare(t *testing.T) {
	const (
		conns   = 64
		payload = 200 << 10
		sent    = 4 << 10 // of each frame, before it stops
	)
	node := rejectingNode(t, 0)
	addr := node.Addr().String()
	first := requestFrame(1, verbEcho, make([]byte, 20<<10))
	big := requestsS2Frame(2, transport.RandomPayload(2, payload))
	require.Greater(t, len(big), payload, "incompressible")

	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse)
	}
	before := heap()

	peers := make([]net.Conn, conns)
	backs := make([]*bufio.Reader, conns)
	for i := range peers {
		peers[i], backs[i] = dialS2As(t, addr, fmt.Sprintf("trickler-%d", i))
	}
	// A plain frame refused whole first: its answer says the reader is
	// past it, at the compressed frame's header, which comes in the same
	// write.
	for _, conn := range peers {
		_, err := conn.Write(append(append([]byte(nil), first...), big[:wire.FrameHeaderSize+sent]...))
		require.NoError(t, err)
	}
	for i, back := range backs {
		require.Equal(t, wire.FailureOverloaded, rejection(t, back, 1), "connection %d", i)
	}

	// The readers now wait for the rest of the compressed frames, or for
	// their share of the room for rejected ones. What they hold meanwhile
	// is measured a few times over a second, and must stay well below the
	// sum of the frames.
	sum := int64(conns * len(big))
	bound := sum / 4
	var grown int64
	for start := time.Now(); time.Since(start) < time.Second && grown <= bound; time.Sleep(50 * time.Millisecond) {
		grown = max(grown, heap()-before)
	}
	t.Logf("the heap grew by %d KiB for %d KiB of compressed frames", grown>>10, sum>>10)
	assert.Less(t, grown, bound, "the heap grew by %d KiB while %d compressed frames of %d KiB (%d KiB) trickled in",
		grown>>10, conns, len(big)>>10, sum>>10)

	// The frames end: each request is refused, as before.
	for _, conn := range peers {
		_, err := conn.Write(big[wire.FrameHeaderSize+sent:])
		require.NoError(t, err)
	}
	for i, back := range backs {
		require.Equal(t, wire.FailureOverloaded, rejection(t, back, 2), "connection %d", i)
	}
	waitFor(t, 5*time.Second, "what the rejected frames held given back", func() bool {
		return node.Stats().InboundHeld < 512<<10
	})
}

// TestRejectedCompressedFrameBehindAFullShareIsAnswered: a compressed
// frame rejected while the room for rejected compressed frames is all
// held waits, its reading paused, and is answered once a holder gives its
// share back: when the holders' frames end, when a holder goes silent and
// Keepalive cuts it off (the waiter's own frame, which waited longer
// than Keepalive since its header came, is not cut off for the wait),
// and the transport's Close ends the wait. Each of its requests is
// refused once, and counted once.
func TestRejectedCompressedFrameBehindAFullShareIsAnswered(t *testing.T) {
	const (
		// Twice the trickled frames that the room for rejected ones
		// holds at once (four of the largest): half of them wait, and the
		// waiter behind them waits for the second four.
		holders = 8
		payload = 200 << 10
		sent    = 4 << 10
	)
	overloaded := func(node *transport.Transport) uint64 {
		return node.Stats().Total().DroppedInbound[transport.ReasonOverloaded]
	}
	throttled := func(node *transport.Transport) uint64 { return node.Stats().Total().Throttled }
	// start fills the room for rejected compressed frames with trickled
	// ones, then has a waiter send three requests in one whole compressed
	// frame, which waits behind them.
	start := func(t *testing.T, keepalive time.Duration) (node *transport.Transport, conns []net.Conn, backs []*bufio.Reader, big []byte, waiter net.Conn, waiterBack *bufio.Reader) {
		node = rejectingNode(t, keepalive)
		addr := node.Addr().String()
		first := requestFrame(1, verbEcho, make([]byte, 20<<10))
		big = requestsS2Frame(2, transport.RandomPayload(2, payload))
		for i := range holders {
			conn, back := dialS2As(t, addr, fmt.Sprintf("holder-%d", i))
			_, err := conn.Write(append(append([]byte(nil), first...), big[:wire.FrameHeaderSize+sent]...))
			require.NoError(t, err)
			require.Equal(t, wire.FailureOverloaded, rejection(t, back, 1), "holder %d", i)
			conns, backs = append(conns, conn), append(backs, back)
		}
		waitFor(t, 5*time.Second, "a trickled frame waiting for its share", func() bool { return throttled(node) > 0 })
		paused := throttled(node)
		waiter, waiterBack = dialS2As(t, addr, "waiter")
		_, err := waiter.Write(requestsS2Frame(10,
			transport.RandomPayload(10, 70<<10), transport.RandomPayload(11, 70<<10), transport.RandomPayload(12, 70<<10)))
		require.NoError(t, err)
		waitFor(t, 5*time.Second, "the waiter waiting for its share", func() bool { return throttled(node) > paused })
		require.Equal(t, uint64(holders), overloaded(node), "only the first frames answered")
		return node, conns, backs, big, waiter, waiterBack
	}
	// refused reads the waiter's back channel until each of its three
	// requests is refused.
	refused := func(t *testing.T, back *bufio.Reader) {
		got := failures(t, back, 10, 11, 12)
		for id := uint64(10); id <= 12; id++ {
			assert.Equal(t, []wire.FailureCode{wire.FailureOverloaded}, got[id], "request %d", id)
		}
	}

	t.Run("holders end their frames", func(t *testing.T) {
		node, conns, backs, big, _, waiterBack := start(t, 0)
		for _, conn := range conns {
			_, err := conn.Write(big[wire.FrameHeaderSize+sent:])
			require.NoError(t, err)
		}
		for i, back := range backs {
			require.Equal(t, wire.FailureOverloaded, rejection(t, back, 2), "holder %d", i)
		}
		refused(t, waiterBack)
		// One outcome a request: the first and the trickled frame of each
		// holder, and the waiter's three.
		waitFor(t, 5*time.Second, "every request counted", func() bool { return overloaded(node) >= 2*holders+3 })
		assert.Equal(t, uint64(2*holders+3), overloaded(node))
		waitFor(t, 5*time.Second, "what the rejected frames held given back", func() bool {
			return node.Stats().InboundHeld < 512<<10
		})
	})

	t.Run("holders go silent", func(t *testing.T) {
		const keepalive = 2 * time.Second
		node, conns, _, _, waiter, waiterBack := start(t, keepalive)
		// Nothing more of the trickled frames: Keepalive cuts the first
		// four off, their shares go to the four that waited first, which
		// it cuts off in turn, and then the waiter, whose frame's header
		// came more than Keepalive before, has its share.
		began := time.Now()
		refused(t, waiterBack)
		assert.Greater(t, time.Since(began), keepalive, "the waiter waited for the second four")
		for _, conn := range conns {
			closedByPeer(t, conn)
		}
		assert.Equal(t, uint64(holders+3), overloaded(node))
		// The waiter's connection was not cut off: it is read on.
		_, err := waiter.Write(requestFrame(20, verbEcho, make([]byte, 20<<10)))
		require.NoError(t, err)
		require.Equal(t, wire.FailureOverloaded, rejection(t, waiterBack, 20))
	})

	t.Run("close", func(t *testing.T) {
		node, _, _, _, waiter, _ := start(t, 0)
		closed := make(chan error, 1)
		go func() { closed <- node.Close() }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return while a reader waited for its share")
		}
		require.NoError(t, waiter.SetDeadline(time.Now().Add(5*time.Second)))
		_, err := io.Copy(io.Discard, waiter)
		var ne net.Error
		assert.False(t, err != nil && errors.As(err, &ne) && ne.Timeout(), "the waiter's connection ended: %v", err)
	})
}

// failures reads the back channel until a response to each of ids has
// come, and returns the failure codes of the responses to ids it read,
// those that came in the same frames as the last included.
func failures(t *testing.T, r *bufio.Reader, ids ...uint64) map[uint64][]wire.FailureCode {
	t.Helper()
	got := make(map[uint64][]wire.FailureCode)
	left := len(ids)
	var hdr [wire.FrameHeaderSize]byte
	for left > 0 {
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(t, err)
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		payload := make([]byte, fh.Length)
		_, err = io.ReadFull(r, payload)
		require.NoError(t, err)
		if fh.Kind != wire.FrameBatch {
			continue
		}
		for off := 0; off < len(payload); {
			var h wire.Header
			n, err := h.Decode(payload[off:], wire.DefaultMaxFramePayload)
			require.NoError(t, err)
			body := payload[off+n : off+n+int(h.PayloadLength)]
			off += n + int(h.PayloadLength)
			if !slices.Contains(ids, h.ID) {
				continue
			}
			if len(got[h.ID]) == 0 {
				left--
			}
			require.NotZero(t, h.Flags&wire.FlagFailure, "response %d is no failure", h.ID)
			f, err := wire.DecodeFailure(body)
			require.NoError(t, err)
			got[h.ID] = append(got[h.ID], f.Code)
		}
	}
	return got
}
