package transport

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// largeRig is a large writer, its queue and sink, and what it wrote.
type largeRig struct {
	t    *testing.T
	w    largeWriter
	q    outQueue
	fw   frameWriter
	sink *recordingSink
	out  bytes.Buffer
}

func newLargeRig(t *testing.T) *largeRig {
	return &largeRig{t: t, sink: newRecordingSink(1 << 30)}
}

// queue pushes large messages (payloads kept by reference) with the
// capacity taken as a producer would.
func (r *largeRig) queue(sizes []int, expires map[int]int64) []uint64 {
	ids := queueMessages(r.t, &r.q, sizes, expires, false)
	r.sink.account.Release(0)
	for i, size := range sizes {
		h := wire.Header{ID: ids[i], Verb: 7, TTL: expires[i], PayloadLength: uint32(size)}
		require.True(r.t, r.sink.account.TryTake(int64(len(wire.AppendHeader(nil, &h))+size+outItemCost)))
	}
	return ids
}

// step runs one round at now and returns the frames it wrote.
func (r *largeRig) step(now int64, maxFrame int) []frame {
	r.t.Helper()
	r.out.Reset()
	require.NoError(r.t, r.w.step(&r.out, &r.fw, &r.q, maxFrame, now, r.sink))
	return readFrames(r.t, r.out.Bytes())
}

func kinds(frames []frame) []wire.FrameKind {
	var k []wire.FrameKind
	for _, f := range frames {
		k = append(k, f.kind)
	}
	return k
}

// TestLargeWriterWaitsForItsGrant: a large message's header goes first,
// alone; no payload byte goes before the receiver grants it; once granted
// its parts go out, interleaved with another granted message's.
func TestLargeWriterWaitsForItsGrant(t *testing.T) {
	r := newLargeRig(t)
	r.queue([]int{300 << 10, 100 << 10}, nil)
	frames := r.step(0, 128<<10)
	require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin, wire.FrameLargeBegin}, kinds(frames))
	h, n, err := wire.DecodeHeader(frames[0].payload, 1<<30)
	require.NoError(t, err)
	assert.Equal(t, len(frames[0].payload), n, "the header alone")
	assert.Equal(t, uint32(300<<10), h.PayloadLength)
	first, second := frames[0].stream, frames[1].stream
	assert.NotEqual(t, first, second)
	assert.False(t, r.w.busy(0), "nothing to write until a grant")
	assert.Empty(t, r.step(0, 128<<10), "still nothing")

	r.w.deliver(backFrame{stream: second})
	r.w.deliver(backFrame{stream: first})
	assert.True(t, r.w.busy(0))
	frames = r.step(0, 128<<10)
	assert.Equal(t, []wire.FrameKind{wire.FrameLargeMore, wire.FrameLargeMore}, kinds(frames), "one part of each")
	frames = r.step(0, 128<<10)
	assert.Equal(t, []wire.FrameKind{wire.FrameLargeMore}, kinds(frames), "the second is done")
	assert.Equal(t, 1, r.sink.messages)
	r.step(0, 128<<10)
	assert.Equal(t, 2, r.sink.messages)
	assert.True(t, r.w.idle())
	assert.Zero(t, r.sink.account.Used(), "all capacity given back")
	assert.Zero(t, r.q.held())
}

// TestLargeWriterRefusalFailsTheMessage: a refusal fails its message with
// the reason the receiver gave, and the stream is free.
func TestLargeWriterRefusalFailsTheMessage(t *testing.T) {
	r := newLargeRig(t)
	ids := r.queue([]int{200 << 10}, nil)
	frames := r.step(0, 64<<10)
	require.Len(t, frames, 1)
	r.w.deliver(backFrame{stream: frames[0].stream, refused: &wire.Failure{Code: wire.FailureOverloaded, Message: "full"}})
	r.w.deliver(backFrame{stream: 9999}) // a grant for nothing in flight: ignored
	assert.Empty(t, r.step(0, 64<<10))
	assert.Equal(t, ReasonOverloaded, r.sink.fails[ids[0]])
	var remote *RemoteError
	require.ErrorAs(t, r.sink.failErrs[ids[0]], &remote)
	assert.ErrorIs(t, r.sink.failErrs[ids[0]], ErrOverloaded)
	assert.True(t, r.w.idle())
	assert.Zero(t, r.sink.account.Used())
}

// TestLargeWriterWithdrawsExpiredMessages: a message that expires while it
// waits for its grant, or while its parts go out, is withdrawn with a
// FrameLargeCancel and fails as expired; one that expired before it began
// fails without a frame.
func TestLargeWriterWithdrawsExpiredMessages(t *testing.T) {
	r := newLargeRig(t)
	ids := r.queue([]int{200 << 10, 200 << 10, 200 << 10}, map[int]int64{0: 100, 1: 200, 2: 50})
	frames := r.step(60, 64<<10) // message 3 expired already
	require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin, wire.FrameLargeBegin}, kinds(frames))
	assert.Equal(t, ReasonExpired, r.sink.fails[ids[2]])
	r.w.deliver(backFrame{stream: frames[1].stream}) // the second is granted
	frames = r.step(150, 64<<10)                     // the first expired waiting for its grant
	require.Equal(t, []wire.FrameKind{wire.FrameLargeCancel, wire.FrameLargeMore}, kinds(frames))
	f, err := wire.DecodeFailure(frames[0].payload)
	require.NoError(t, err)
	assert.Equal(t, wire.FailureExpired, f.Code)
	assert.Equal(t, ReasonExpired, r.sink.fails[ids[0]])
	frames = r.step(250, 64<<10) // the second expired mid-transfer
	require.Equal(t, []wire.FrameKind{wire.FrameLargeCancel}, kinds(frames))
	assert.Equal(t, ReasonExpired, r.sink.fails[ids[1]])
	assert.True(t, r.w.idle())
	assert.Zero(t, r.sink.account.Used())
}

// TestLargeWriterResetKeepsWhatDidNotStart: when the connection breaks,
// messages of which no payload byte was written wait for the next
// connection, in order; those partly written fail.
func TestLargeWriterResetKeepsWhatDidNotStart(t *testing.T) {
	r := newLargeRig(t)
	ids := r.queue([]int{200 << 10, 200 << 10, 200 << 10}, nil)
	frames := r.step(0, 64<<10)
	r.w.deliver(backFrame{stream: frames[0].stream})
	r.step(0, 64<<10) // a part of the first
	r.w.reset(&r.q, r.sink, ErrConnectionReset)
	assert.Equal(t, map[uint64]Reason{ids[0]: ReasonConnectionReset}, r.sink.fails)
	frames = r.step(0, 64<<10) // on the next connection
	require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin, wire.FrameLargeBegin}, kinds(frames))
	for i, f := range frames {
		h, _, err := wire.DecodeHeader(f.payload, 1<<30)
		require.NoError(t, err)
		assert.Equal(t, ids[i+1], h.ID, "in order")
	}
	r.w.failAll(&r.q, ReasonClosed, ErrClosed, r.sink)
	assert.Equal(t, ReasonClosed, r.sink.fails[ids[1]])
	assert.Equal(t, ReasonClosed, r.sink.fails[ids[2]])
	assert.Zero(t, r.sink.account.Used())
}

// TestLargeWriterDropsGrantsOfAConnectionReset: nothing waits for a
// connection's back-channel reader when the connection closes, so a grant
// it had read may reach the writer after reset. It was kept and counted
// as work: with the peer down and nothing to send, the lane dialled again
// and again. Until the next connection begins, such frames are dropped.
func TestLargeWriterDropsGrantsOfAConnectionReset(t *testing.T) {
	r := newLargeRig(t)
	r.queue([]int{200 << 10}, nil)
	frames := r.step(0, 64<<10)
	r.w.reset(&r.q, r.sink, ErrConnectionReset)
	r.w.deliver(backFrame{stream: frames[0].stream}) // from the old connection's reader
	r.w.admit(&r.q)
	r.w.failAll(&r.q, ReasonClosed, ErrClosed, r.sink) // nothing left to send
	assert.False(t, r.w.busy(0), "a stale grant is not work")
	r.w.open()
	r.queue([]int{200 << 10}, nil)
	frames = r.step(0, 64<<10)
	require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin}, kinds(frames))
	require.True(t, r.w.deliver(backFrame{stream: frames[0].stream}))
	assert.True(t, r.w.busy(0), "a grant on the new connection is")
}

// TestLargeWriterKeepsNoGrantsForNothing: a grant or refusal that comes
// while no message of its stream is in flight applies to nothing and is
// dropped, not kept for a writer that may not run again (with eager
// responses a requester refuses responses written whole already, many
// at once); a receiver that sends far more than it was asked for of the
// messages in flight is reported.
func TestLargeWriterKeepsNoGrantsForNothing(t *testing.T) {
	r := newLargeRig(t)
	for i := range 10 * maxInbox {
		require.True(t, r.w.deliver(backFrame{stream: uint32(i + 1)}))
	}
	assert.False(t, r.w.busy(0), "nothing kept")
	r.queue([]int{200 << 10}, nil)
	r.step(0, 64<<10) // stream 1 begins
	for i := range 10 * maxInbox {
		require.True(t, r.w.deliver(backFrame{stream: uint32(i + 1000)}), "a stream not in flight")
	}
	for range maxInbox {
		require.True(t, r.w.deliver(backFrame{stream: 1}))
	}
	assert.False(t, r.w.deliver(backFrame{stream: 1}), "one more than the inbox holds")
}

// cutWriter takes the first limit bytes written to it, then fails.
type cutWriter struct {
	limit int
	got   bytes.Buffer
}

var errCutWrite = errors.New("test: the connection broke")

func (c *cutWriter) Write(b []byte) (int, error) {
	n := min(len(b), c.limit-c.got.Len())
	c.got.Write(b[:n])
	if n < len(b) {
		return n, errCutWrite
	}
	return n, nil
}

// TestLargeWriterFailedPartWrite: a granted message whose first part's
// write fails is sent again on the next connection when not one byte of
// that part's frame was written, and fails (ReasonConnectionReset) once
// any was: its receiver may have counted it. The writer counted it as
// partly sent before its write, so a write that failed outright lost it.
func TestLargeWriterFailedPartWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   int // bytes of the part's write that get through
		resends bool
	}{
		{"nothing written", 0, true},
		{"part of the frame header", 5, false},
		{"the frame header, no payload", wire.FrameHeaderSize, false},
		{"some payload", wire.FrameHeaderSize + 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLargeRig(t)
			ids := r.queue([]int{200 << 10}, nil)
			frames := r.step(0, 64<<10)
			r.w.deliver(backFrame{stream: frames[0].stream})
			dst := &cutWriter{limit: tc.limit}
			require.ErrorIs(t, r.w.step(dst, &r.fw, &r.q, 64<<10, 0, r.sink), errCutWrite)
			if !tc.resends {
				assert.Equal(t, map[uint64]Reason{ids[0]: ReasonConnectionReset}, r.sink.fails)
				assert.Empty(t, r.step(0, 64<<10), "nothing left to send")
				return
			}
			assert.Empty(t, r.sink.fails)
			r.w.open() // the next connection
			frames = r.step(0, 64<<10)
			require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin}, kinds(frames))
			h, _, err := wire.DecodeHeader(frames[0].payload, 1<<30)
			require.NoError(t, err)
			assert.Equal(t, ids[0], h.ID)
			r.w.deliver(backFrame{stream: frames[0].stream})
			var sent int
			for range 4 {
				for _, f := range r.step(0, 64<<10) {
					require.Equal(t, wire.FrameLargeMore, f.kind)
					sent += len(f.payload)
				}
			}
			assert.Equal(t, 200<<10, sent, "the whole payload, once")
			assert.Equal(t, 1, r.sink.messages)
		})
	}
}

// TestLargeWriterCountsAMessageWhoseLastPartWentWhole: a write cut short
// after the whole frame of a message's last part (a peer that stopped
// reading, cut off by Timeouts.Write) failed that message too, and
// OnDropped handed it back for a hint to replay; but its receiver has all
// of it, and runs it: a replayed hint ran twice. It counts as written
// now; the message cut short in the same write fails.
func TestLargeWriterCountsAMessageWhoseLastPartWentWhole(t *testing.T) {
	r := newLargeRig(t)
	ids := r.queue([]int{100 << 10, 200 << 10}, nil)
	for _, f := range r.step(0, 64<<10) {
		r.w.deliver(backFrame{stream: f.stream})
	}
	require.Len(t, r.step(0, 64<<10), 2, "setup: the first part of each")
	lastPart := wire.FrameHeaderSize + 36<<10 // the first message's
	dst := &cutWriter{limit: lastPart + 100}
	require.ErrorIs(t, r.w.step(dst, &r.fw, &r.q, 64<<10, 0, r.sink), errCutWrite)
	f := readFrames(t, dst.got.Bytes()[:lastPart])
	require.Len(t, f, 1)
	require.Len(t, f[0].payload, 36<<10, "setup: the socket took the first message's last part whole")
	assert.NotContains(t, r.sink.fails, ids[0], "the message its receiver got whole failed: OnDropped replays it")
	assert.Equal(t, 1, r.sink.messages, "messages counted written")
	assert.Equal(t, ReasonConnectionReset, r.sink.fails[ids[1]], "the message cut short")
	assert.Zero(t, r.sink.account.Used())
}

// TestLargeWriterBeginsAtMostItsShare: no more than maxBegunLarge messages
// are begun at once; the rest wait their turn.
func TestLargeWriterBeginsAtMostItsShare(t *testing.T) {
	r := newLargeRig(t)
	sizes := make([]int, maxBegunLarge+3)
	for i := range sizes {
		sizes[i] = 70 << 10
	}
	r.queue(sizes, nil)
	frames := r.step(0, 256<<10)
	assert.Len(t, frames, maxBegunLarge)
	for _, f := range frames {
		r.w.deliver(backFrame{stream: f.stream})
	}
	frames = r.step(0, 256<<10) // all of each granted one
	assert.Equal(t, maxBegunLarge, r.sink.messages)
	for _, k := range kinds(frames) {
		assert.Equal(t, wire.FrameLargeMore, k)
	}
	assert.Len(t, frames, maxBegunLarge)
	frames = r.step(0, 256<<10) // their slots are free: the rest begin
	assert.Equal(t, []wire.FrameKind{wire.FrameLargeBegin, wire.FrameLargeBegin, wire.FrameLargeBegin}, kinds(frames))
}

// TestLargeWriterEmptyPayload: a message pinned to the large lane with no
// payload is complete once granted.
func TestLargeWriterEmptyPayload(t *testing.T) {
	r := newLargeRig(t)
	r.queue([]int{0}, nil)
	frames := r.step(0, 64<<10)
	require.Len(t, frames, 1)
	r.w.deliver(backFrame{stream: frames[0].stream})
	assert.Empty(t, r.step(0, 64<<10))
	assert.Equal(t, 1, r.sink.messages)
	assert.True(t, r.w.idle())
}

// TestLargeWriterWriteError: a write that failed after some of a part
// went loses the message, and gives back what it held.
func TestLargeWriterWriteError(t *testing.T) {
	r := newLargeRig(t)
	ids := r.queue([]int{200 << 10}, nil)
	frames := r.step(0, 64<<10)
	r.w.deliver(backFrame{stream: frames[0].stream})
	require.Error(t, r.w.step(&cutWriter{limit: wire.FrameHeaderSize + 100}, &r.fw, &r.q, 64<<10, 0, r.sink))
	assert.Equal(t, ReasonConnectionReset, r.sink.fails[ids[0]])
	assert.Zero(t, r.sink.account.Used())
}

// TestLargeWriterEmptyMessageEndsAsItsReceiverTookIt: an empty message is
// all in its FrameLargeBegin, and its receiver takes it as it grants it.
// One its sender gave up on (a request whose caller left, a message whose
// deadline passed) while that grant was on its way was withdrawn all the
// same: its sender counted it cancelled, or expired, while its receiver
// had handed it to its handler and counted it received, and ignored the
// FrameLargeCancel that came after. Once begun it now ends as its
// receiver answers: written once granted, failed once refused.
func TestLargeWriterEmptyMessageEndsAsItsReceiverTookIt(t *testing.T) {
	w := newLargeRig(t)
	r := newReaderRig(t, routing.Large, nil)
	h := newRecorder(false)
	r.tr.Handle(7, h)
	// The first expires at a minute on the writer's clock (its TTL says so
	// too), the second is a request.
	ids := w.queue([]int{0, 0}, map[int]int64{0: int64(time.Minute)})
	frames := w.step(0, 64<<10)
	require.Equal(t, []wire.FrameKind{wire.FrameLargeBegin, wire.FrameLargeBegin}, kinds(frames))
	r.write(w.out.Bytes())
	var grants []frame
	for len(grants) < 2 {
		if f := within(t, r.back, 5*time.Second, "a grant"); f.kind == wire.FrameGrant {
			grants = append(grants, f)
		}
	}
	eventually(t, func() bool { return r.in.received.Load() == 2 }, "both taken as they were granted")

	// Before the grants reach the writer: the second's caller gives up,
	// the first's deadline passes.
	require.True(t, w.w.withdraw(ids[1], ReasonCanceled))
	frames = w.step(2*int64(time.Minute), 64<<10)
	r.write(w.out.Bytes())
	assert.Empty(t, kinds(frames), "no FrameLargeCancel for what the receiver has taken")
	assert.False(t, w.w.busy(2*int64(time.Minute)), "nothing to do but wait for the answers")
	for _, g := range grants {
		w.w.deliver(backFrame{stream: g.stream})
	}
	assert.Empty(t, w.step(2*int64(time.Minute), 64<<10))

	// One outcome each, the same on both sides.
	assert.Empty(t, w.sink.fails, "the sender counts them written, as the receiver took them")
	assert.Equal(t, 2, w.sink.messages)
	assert.True(t, w.w.idle())
	assert.Zero(t, w.sink.account.Used())
	assert.ElementsMatch(t, ids, []uint64{within(t, h.got, 5*time.Second, "a handler"), within(t, h.got, 5*time.Second, "a handler")})
	assert.EqualValues(t, 2, r.in.received.Load())
	for reason := range NumReasons {
		assert.Zero(t, r.in.dropped[reason].Load(), "dropped as %v on the receiver", reason)
	}
}
