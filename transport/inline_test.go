package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestInlineHandlersRunInArrivalOrder: a frame of one-way messages and
// requests to an Inline verb, in turn, runs in the order the frame holds
// them, and its requests are answered together, in one batch frame, in
// that order: the reader runs the handlers itself and writes what they
// answered once it has run them all. (A verb of the default kind runs its
// requests in a stage and its one-way messages in a queue, each on a
// goroutine of its own, in no order between them.) An Inline verb has no
// stage to show in Stats.
func TestInlineHandlersRunInArrivalOrder(t *testing.T) {
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = true })
	defer c.Close()
	var mu sync.Mutex
	var seen []string
	c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		mu.Lock()
		seen = append(seen, string(m.Payload))
		mu.Unlock()
		return m.Payload, nil
	}), transport.Inline())
	conn := dialAs(c.Nodes[0].Addr().String(), "asker", routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	const n = 100
	var msgs [][]byte
	var sent []string
	for i := range n {
		payload := []byte(fmt.Sprint(i))
		h := wire.Header{ID: uint64(i + 1), Verb: uint32(verbEcho), PayloadLength: uint32(len(payload))}
		if i%2 == 1 {
			h.Flags = wire.FlagExpectsResponse
		}
		msgs = append(msgs, append(wire.AppendHeader(nil, &h), payload...))
		sent = append(sent, string(payload))
	}
	_, err := conn.Write(batchOf(msgs...))
	require.NoError(t, err)

	ids, payloads := firstBatch(t, conn)
	require.Len(t, ids, n/2, "every answer in the first frame")
	for i, id := range ids {
		assert.Equal(t, uint64(2*i+2), id)
		assert.Equal(t, fmt.Sprint(2*i+1), string(payloads[i]))
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, sent, seen, "run in the order sent")
	for _, s := range c.Nodes[0].Stats().Stages {
		assert.NotEqual(t, verbEcho, s.Verb, "an Inline verb has no stage")
	}
}

// TestInlineOneWayFrameRunsInOrder: a frame of one-way messages to one
// Inline verb runs on the reader as one piece of work, not one a message:
// in the order the frame holds them, each counted once. One that arrives
// expired is dropped as expired, a handler that panics is counted as its
// error, and neither stops the messages behind it.
func TestInlineOneWayFrameRunsInOrder(t *testing.T) {
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = true })
	defer c.Close()
	var mu sync.Mutex
	var seen []string
	c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		mu.Lock()
		seen = append(seen, string(m.Payload))
		mu.Unlock()
		if string(m.Payload) == "panic" {
			panic("handler panics")
		}
		return nil, nil
	}), transport.Inline())
	conn := dialAs(c.Nodes[0].Addr().String(), "sender", routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	const n, expired, panics = 100, 30, 60
	var msgs [][]byte
	var want []string
	for i := range n {
		payload := []byte(fmt.Sprint(i))
		if i == panics {
			payload = []byte("panic")
		}
		h := wire.Header{ID: uint64(i + 1), Verb: uint32(verbEcho), PayloadLength: uint32(len(payload))}
		if i == expired {
			h.Flags, h.TTL = wire.FlagTTL, 1 // a nanosecond after it arrives
		} else {
			want = append(want, string(payload))
		}
		msgs = append(msgs, append(wire.AppendHeader(nil, &h), payload...))
	}
	_, err := conn.Write(batchOf(msgs...))
	require.NoError(t, err)

	var total transport.ConnStats
	require.Eventually(t, func() bool {
		total = c.Nodes[0].Stats().Total()
		return total.MessagesReceived+total.DroppedInbound[transport.ReasonExpired] == n
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, uint64(n-1), total.MessagesReceived)
	assert.Equal(t, uint64(1), total.DroppedInbound[transport.ReasonExpired])
	assert.Equal(t, uint64(1), total.HandlerErrors)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, want, seen, "run in the order sent")
}

// firstBatch reads conn's back channel up to its first batch frame and
// returns the IDs and payloads of its messages.
func firstBatch(t *testing.T, conn net.Conn) (ids []uint64, payloads [][]byte) {
	t.Helper()
	r := bufio.NewReader(conn)
	var hdr [wire.FrameHeaderSize]byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(t, err)
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		body := make([]byte, fh.Length)
		_, err = io.ReadFull(r, body)
		require.NoError(t, err)
		require.NoError(t, fh.Verify(body))
		if fh.Kind != wire.FrameBatch {
			continue // a beat
		}
		for off := 0; off < len(body); {
			var h wire.Header
			k, err := h.Decode(body[off:], 1<<20)
			require.NoError(t, err)
			end := off + k + int(h.PayloadLength)
			ids, payloads = append(ids, h.ID), append(payloads, body[off+k:end])
			off = end
		}
		return ids, payloads
	}
}

// batchOf frames messages, each an encoded header and its payload, as one
// batch frame.
func batchOf(messages ...[]byte) []byte {
	var body []byte
	for _, m := range messages {
		body = append(body, m...)
	}
	return append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, body), body...)
}

// TestInlineReaderNeverWaitsOnADeafRequestersFrames: as
// TestHandlersNeverWaitOnARequesterThatStopsReading/Inline, but the deaf
// requester puts 128 requests in each frame. The reader runs the 128
// Inline handlers, then must not write their answers itself (a segment of
// 256 KiB, more than the send buffer and the requester's receive window
// take) just because the socket's send queue is low: it would read
// nothing more until Timeouts.Write. It writes only when what is queued
// is within callerWriteLimit too, as a handler's goroutine does.
func TestInlineReaderNeverWaitsOnADeafRequestersFrames(t *testing.T) {
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		neverWaits(cfg)
		cfg.Security.AcceptUnknownPeers = true
		cfg.Timeouts.Write = time.Minute
		cfg.Timeouts.Keepalive = time.Minute
		// A fixed send buffer (no autotuning): a write of more than it
		// takes waits for the requester.
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 16 << 10
	})
	defer c.Close()
	quietAtOnce(c)
	const perFrame, frames = 128, 20 // 7.5 MiB of answers, 384 KiB a frame
	handled := make(chan struct{}, perFrame*frames)
	answer := make([]byte, 3<<10)
	c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		handled <- struct{}{}
		return answer, nil
	}), transport.Inline())
	conn := dialAs(c.Nodes[0].Addr().String(), "deaf", routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	id := uint64(0)
	for i := range frames {
		var msgs [][]byte
		for range perFrame {
			id++
			h := wire.Header{Flags: wire.FlagExpectsResponse, ID: id, Verb: uint32(verbEcho), PayloadLength: 2}
			msgs = append(msgs, append(wire.AppendHeader(nil, &h), "hi"...))
		}
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Write(batchOf(msgs...))
		require.NoError(t, err, "frame %d not taken: the reader waits", i)
		for j := range perFrame {
			select {
			case <-handled:
			case <-time.After(10 * time.Second):
				t.Fatalf("frame %d, request %d not handled: the reader waits in a write", i, j)
			}
		}
	}
	st := laneStats(t, c.Nodes[0], string(transport.StrangersPeer), routing.Small)
	t.Logf("%d handled; %d answers written, %d caller writes", perFrame*frames, st.MessagesSent, st.CallerWrites)
}
