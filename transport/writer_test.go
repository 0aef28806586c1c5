package transport

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// queueMessages pushes messages with the given payload sizes and returns
// their IDs; expires[i], when set, is message i's expiry.
func queueMessages(t testing.TB, q *outQueue, sizes []int, expires map[int]int64, copyPayload bool) []uint64 {
	t.Helper()
	var ids []uint64
	for i, size := range sizes {
		id := uint64(i + 1)
		h := wire.Header{ID: id, Verb: 7, TTL: expires[i], PayloadLength: uint32(size)}
		it := outItem{id: id, verb: 7, expiresAt: expires[i], isRequest: i%3 == 1, isResponse: i%3 == 2}
		payload := bytes.Repeat([]byte{byte(i)}, size)
		_, err := q.push(it, wire.AppendHeader(nil, &h), payload, copyPayload)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return ids
}

// TestWriteBatchFramesLiveMessages: a segment's messages go out as batch
// frames of at most maxFrame bytes, in order; expired ones fail, are left
// out, and split the frames around them.
func TestWriteBatchFramesLiveMessages(t *testing.T) {
	tests := []struct {
		name     string
		sizes    []int
		expired  []int
		maxFrame int
		frames   int
	}{
		{"one message", []int{10}, nil, 1 << 10, 1},
		{"several in one frame", []int{10, 20, 30}, nil, 1 << 10, 1},
		{"split at the frame limit", []int{300, 300, 300, 300}, nil, 700, 2},
		{"an expired message splits the frame", []int{10, 10, 10}, []int{1}, 1 << 10, 2},
		{"all expired", []int{10, 10}, []int{0, 1}, 1 << 10, 0},
		{"empty payloads", []int{0, 0, 0}, nil, 1 << 10, 1},
		{"split at the message limit", make([]int, wire.MaxBatchMessages+1), nil, 256 << 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q outQueue
			expires := map[int]int64{}
			for _, i := range tt.expired {
				expires[i] = 1 // long past
			}
			ids := queueMessages(t, &q, tt.sizes, expires, true)
			b, observed := q.take()
			require.NotNil(t, b)
			assert.Zero(t, observed)
			sink := newRecordingSink(1 << 20)
			var out bytes.Buffer
			var fw frameWriter
			messages, _, err := fw.writeBatch(&out, b, tt.maxFrame, 2, sink)
			require.NoError(t, err)
			frames := readFrames(t, out.Bytes())
			require.Len(t, frames, tt.frames)
			var got []uint64
			for i, f := range frames {
				fids, payloads := messagesIn(t, f)
				assert.LessOrEqual(t, len(f.payload), tt.maxFrame, "frame %d", i)
				for j, id := range fids {
					assert.Equal(t, tt.sizes[id-1], len(payloads[j]))
				}
				got = append(got, fids...)
			}
			var want []uint64
			for i, id := range ids {
				if _, gone := expires[i]; !gone {
					want = append(want, id)
				}
			}
			assert.Equal(t, want, got, "live messages, in order")
			assert.Equal(t, len(want), messages)
			assert.Len(t, sink.fails, len(tt.expired))
			for _, i := range tt.expired {
				assert.Equal(t, ReasonExpired, sink.fails[ids[i]])
				assert.Len(t, sink.payloads[ids[i]], tt.sizes[i], "OnDropped gets the payload")
			}
			if len(want) > 0 {
				assert.Equal(t, 1, sink.writes, "one vectored write")
			}
		})
	}
}

// TestWriteBatchFailsEverythingOnAWriteError: a write that fails fails
// every message it carried with ReasonConnectionReset, and the sink hears
// no write.
func TestWriteBatchFailsEverythingOnAWriteError(t *testing.T) {
	var q outQueue
	ids := queueMessages(t, &q, []int{5, 6, 7}, nil, true)
	b, _ := q.take()
	sink := newRecordingSink(1 << 20)
	var fw frameWriter
	_, _, err := fw.writeBatch(failingWriter{}, b, 1<<10, 0, sink)
	require.Error(t, err)
	for _, id := range ids {
		assert.Equal(t, ReasonConnectionReset, sink.fails[id])
	}
	assert.Zero(t, sink.writes)
	assert.Empty(t, sink.requests, "no request counts as written")
}

// TestWriteBatchCountsTheFramesAWriteCutShortTookWhole: a write that
// fails after the socket took some of its frames whole (a peer that
// stopped reading, cut off by Timeouts.Write) failed every message it
// carried, and OnDropped handed them all back for a hint to replay; but
// the peer reads the frames it got whole, and runs their messages: a
// replayed hint ran twice. A message counts as sent once written to its
// socket, so those frames' messages count as written now, as a write's
// that succeeded do, and only the rest fail.
func TestWriteBatchCountsTheFramesAWriteCutShortTookWhole(t *testing.T) {
	var q outQueue
	// One-way, request, response, one-way: two per frame of 700 bytes.
	ids := queueMessages(t, &q, []int{300, 300, 300, 300}, nil, true)
	b, _ := q.take()
	var whole bytes.Buffer
	var fw frameWriter
	_, _, err := fw.writeBatch(&whole, b, 700, 0, newRecordingSink(1<<20))
	require.NoError(t, err)
	frames := readFrames(t, whole.Bytes())
	require.Len(t, frames, 2)
	firstFrame := wire.FrameHeaderSize + len(frames[0].payload)

	q = outQueue{}
	queueMessages(t, &q, []int{300, 300, 300, 300}, nil, true)
	b, _ = q.take()
	sink := newRecordingSink(1 << 20)
	cut := &cutWriter{limit: firstFrame + 10} // the first frame and a bit of the second
	_, _, err = fw.writeBatch(cut, b, 700, 0, sink)
	require.Error(t, err)
	got, _ := messagesIn(t, readFrames(t, cut.got.Bytes()[:firstFrame])[0])
	require.Equal(t, ids[:2], got, "setup: the socket took the first frame whole")
	assert.NotContains(t, sink.fails, ids[0], "the one-way message of the frame written whole failed: OnDropped replays it")
	assert.NotContains(t, sink.fails, ids[1], "the request of the frame written whole failed at the write, not with its connection")
	assert.Equal(t, []uint64{ids[1]}, sink.requests, "the request written whole is the connection's to fail")
	assert.Equal(t, 2, sink.messages, "messages counted written")
	assert.Equal(t, ReasonConnectionReset, sink.fails[ids[2]], "the response cut short")
	assert.Equal(t, ReasonConnectionReset, sink.fails[ids[3]], "the one-way message cut short")
}

// TestWriteBatchRecordsRequests: written requests are reported, so that a
// connection that dies can fail them.
func TestWriteBatchRecordsRequests(t *testing.T) {
	var q outQueue
	queueMessages(t, &q, []int{1, 2, 3, 4, 5}, nil, true)
	b, _ := q.take()
	sink := newRecordingSink(1 << 20)
	var fw frameWriter
	_, _, err := fw.writeBatch(&bytes.Buffer{}, b, 1<<10, 0, sink)
	require.NoError(t, err)
	assert.Equal(t, []uint64{2, 5}, sink.requests)
	assert.Equal(t, 1, sink.responses)
}

func TestWritePing(t *testing.T) {
	var out bytes.Buffer
	var fw frameWriter
	require.NoError(t, fw.writePing(&out))
	assert.Equal(t, []frame{{kind: wire.FramePing, payload: []byte{}}}, readFrames(t, out.Bytes()))
	assert.Error(t, fw.writePing(failingWriter{}))
}

// TestFrameWriterDoesNotAllocate: framing a batch reuses the writer's
// buffers.
func TestFrameWriterDoesNotAllocate(t *testing.T) {
	var q outQueue
	for range 100 {
		queueMessages(t, &q, []int{100}, nil, true)
	}
	b, _ := q.take()
	sink := newRecordingSink(1 << 20)
	var fw frameWriter
	var out bytes.Buffer
	out.Grow(1 << 20)
	_, _, _ = fw.writeBatch(&out, b, 1<<10, 0, sink)
	allocs := testing.AllocsPerRun(50, func() {
		out.Reset()
		_, _, _ = fw.writeBatch(&out, b, 1<<10, 0, sink)
	})
	assert.Zero(t, allocs, fmt.Sprintf("%v allocations per batch", allocs))
}

// TestWriteBatchPutsCancelsInFramesReadWithoutRoom: a receiver whose
// inbound room is held by running handlers reads a frame before taking
// room for it only when it is at most maxUnadmittedFrame bytes, and acts
// on it at once only when it holds cancels alone. A burst of cancels (a
// caller giving up on a fan-out of requests), coalesced on the urgent
// lane, must go in such frames, or none of them reaches the handlers that
// hold the room; and ahead of the write's other frames, which the receiver
// may wait to take, reading nothing behind them meanwhile.
func TestWriteBatchPutsCancelsInFramesReadWithoutRoom(t *testing.T) {
	var q outQueue
	push := func(h wire.Header, payload []byte) {
		h.PayloadLength = uint32(len(payload))
		_, err := q.push(outItem{id: h.ID, verb: h.Verb}, wire.AppendHeader(nil, &h), payload, true)
		require.NoError(t, err)
	}
	push(wire.Header{ID: 1, Verb: 7}, []byte("gossip"))
	const cancels = 300
	for id := uint64(100); id < 100+cancels; id++ {
		push(wire.Header{Flags: wire.FlagCancel, ID: id, Verb: 8, TTL: 5e9}, nil)
	}
	push(wire.Header{ID: 2, Verb: 7}, []byte("gossip"))
	b, _ := q.take()
	var out bytes.Buffer
	var fw frameWriter
	messages, _, err := fw.writeBatch(&out, b, wire.DefaultMaxFramePayload, 2, newRecordingSink(1<<20))
	require.NoError(t, err)
	require.Equal(t, cancels+2, messages)
	seen, others := 0, 0
	for i, f := range readFrames(t, out.Bytes()) {
		var h wire.Header
		n, withCancel := 0, 0
		require.NoError(t, forEachMessage(f.payload, wire.DefaultMaxFramePayload, &h, func(h *wire.Header, _ []byte) {
			n++
			if h.Flags&wire.FlagCancel != 0 {
				withCancel++
			}
		}))
		seen += withCancel
		if withCancel > 0 {
			assert.Equal(t, n, withCancel, "frame %d: cancels alone", i)
			assert.LessOrEqual(t, len(f.payload), maxUnadmittedFrame, "frame %d: read before its room", i)
			assert.Zero(t, others, "frame %d: cancels behind a frame the receiver may wait to take", i)
		} else {
			others++
		}
	}
	assert.Equal(t, cancels, seen)
	assert.Equal(t, 2, others, "the two others, in a frame each: the cancels were between them")
}
