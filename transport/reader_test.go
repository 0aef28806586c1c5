package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// The reader core's tests: an inConn reads frames from one end of an
// in-memory pipe the test writes into, and its back channel (beats,
// grants, refusals) comes back out of it. No socket, no dialling peer.

// TestReaderDeliversABatchInOrder: a batch's messages reach their handler
// in order, each counted received once, and the frame's capacity is given
// back when the last handler returns.
func TestReaderDeliversABatchInOrder(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	h := newRecorder(false)
	r.tr.Handle(1, h)
	r.write(batchFrame(oneWay(1, []byte("a")), oneWay(2, []byte("bb")), oneWay(3, nil)))
	r.write(batchFrame(oneWay(4, []byte("dddd"))))
	for range 4 {
		within(t, h.got, 5*time.Second, "a message")
	}
	assert.Equal(t, []uint64{1, 2, 3, 4}, h.seen())
	assert.Equal(t, [][]byte{[]byte("a"), []byte("bb"), nil, []byte("dddd")}, h.payloads)
	assert.EqualValues(t, 4, r.in.received.Load())
	assert.EqualValues(t, 7, r.in.receivedBytes.Load())
	eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
}

// TestReaderUnknownVerbAndExpiredAreDropped: a message for a verb with no
// handler and one already expired are each counted dropped, once.
func TestReaderUnknownVerbAndExpiredAreDropped(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	h := newRecorder(false)
	r.tr.Handle(1, h)
	r.write(batchFrame(
		message(wire.Header{ID: 1, Verb: 99}, []byte("x")),
		message(wire.Header{ID: 2, Verb: 1, TTL: 1}, []byte("y")), // expired as it arrives
		oneWay(3, []byte("z"))))
	within(t, h.got, 5*time.Second, "the live message")
	eventually(t, func() bool {
		return r.in.dropped[ReasonUnknownVerb].Load() == 1 && r.in.dropped[ReasonExpired].Load() == 1
	}, "both drops counted")
	assert.Equal(t, []uint64{3}, h.seen())
	assert.EqualValues(t, 1, r.in.received.Load())
}

// TestReaderPausesWhenFull: with OverloadPause, a reader out of capacity
// stops reading — the sender's write does not complete — and reads on
// once a handler gives capacity back; nothing is lost.
func TestReaderPausesWhenFull(t *testing.T) {
	r := newReaderRig(t, routing.Small, limitedTo(128<<10, 256<<10))
	h := newRecorder(true)
	r.tr.Handle(1, h)
	payload := make([]byte, 100<<10) // 112 KiB buffers: two fit
	r.write(batchFrame(oneWay(1, payload)))
	within(t, h.got, 5*time.Second, "the first message")
	r.write(batchFrame(oneWay(2, payload)))
	sent := r.writeAsync(batchFrame(oneWay(3, payload)))
	eventually(t, func() bool { return r.in.throttled.Load() == 1 }, "the reader to pause")
	select {
	case <-sent:
		// The frame's header went through before the pause; its
		// payload must not have.
		t.Fatal("the paused reader read a whole frame")
	case <-time.After(20 * time.Millisecond):
	}
	close(h.gate)
	require.NoError(t, within(t, sent, 5*time.Second, "the write to complete"))
	for range 2 {
		within(t, h.got, 5*time.Second, "a message")
	}
	assert.Equal(t, []uint64{1, 2, 3}, h.seen())
	eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
	assert.Positive(t, r.in.throttledNanos.Load())
}

// TestReaderFrameWaitingForRoomExpiresFromItsArrival: under
// OverloadPause a frame too large to be read before its room (above 4
// KiB) has its header read, then waits for room with its payload unread.
// Its messages' TTLs start when its header arrived, as a small frame's
// start when it is read: the reader stamped their arrival only once the
// room came, so a request whose caller had long given up at its deadline
// (and sends no cancel for that) still ran its handler once the room was
// back, with a deadline as far past the wait as its TTL. In a synctest
// bubble: the deadline passes on the bubble's clock.
func TestReaderFrameWaitingForRoomExpiresFromItsArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newReaderRig(t, routing.Small, limitedTo(128<<10, 256<<10))
		hold := newRecorder(true)
		r.tr.Handle(1, hold, Ordered())
		var ran atomic.Int32
		r.tr.Handle(2, HandlerFunc(func(context.Context, *Message) ([]byte, error) {
			ran.Add(1)
			return []byte("late"), nil
		}))
		payload := make([]byte, 100<<10) // 112 KiB buffers: two fit
		r.write(batchFrame(oneWay(1, payload)))
		r.write(batchFrame(oneWay(2, payload)))
		within(t, hold.got, 5*time.Second, "the first message held")

		// A request of 40 KiB, with 200 ms to live: its header is read, its
		// payload waits with the reader for room.
		const ttl = 200 * time.Millisecond
		r.writeAsync(batchFrame(message(wire.Header{Flags: wire.FlagExpectsResponse, ID: 3, Verb: 2, TTL: int64(ttl)}, make([]byte, 40<<10))))
		synctest.Wait()
		require.EqualValues(t, 1, r.in.throttled.Load(), "the reader waits for the request's room")

		time.Sleep(ttl) // the bubble's clock: the request's deadline has passed
		close(hold.gate)
		synctest.Wait()
		assert.Zero(t, ran.Load(), "a request past its deadline ran its handler")
		assert.EqualValues(t, 1, r.in.dropped[ReasonExpired].Load(), "the request dropped as expired")
		assert.EqualValues(t, 2, r.in.received.Load(), "only the held messages received")
		select {
		case f := <-r.back:
			t.Fatalf("an expired request was answered: %v", f)
		default:
		}
	})
}

// TestReaderRejectsWhenFull: with OverloadReject a reader out of capacity
// reads on, drops what does not fit as overloaded and answers each with
// a failure; responses still reach their callers.
func TestReaderRejectsWhenFull(t *testing.T) {
	r := newReaderRig(t, routing.Small, func(c *Config) {
		c.Memory.MaxMessageSize = 250 << 10
		c.Memory.Inbound = Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		c.Memory.InboundOverload = OverloadReject
	})
	h := newRecorder(true)
	defer close(h.gate)
	r.tr.Handle(1, h)
	r.write(batchFrame(oneWay(1, make([]byte, 250<<10)))) // a 256 KiB buffer: full
	within(t, h.got, 5*time.Second, "the first message")
	r.write(batchFrame(oneWay(2, make([]byte, 100)), oneWay(3, nil)))
	eventually(t, func() bool { return r.in.dropped[ReasonOverloaded].Load() == 2 }, "the rejections")
	assert.Equal(t, []uint64{1}, h.seen())
	assert.Equal(t, int64(256<<10)+workCost, r.used(), "only the admitted frame, and its one message's work, hold capacity")

	// Each rejection is answered with a failure, back on the connection.
	answers := r.responses(2)
	for _, id := range []uint64{2, 3} {
		require.Contains(t, answers, id)
		assert.Equal(t, wire.FailureOverloaded.String(), answers[id])
	}
}

// responses reads n responses from the back channel: the payload of
// each by its ID, or for a failure its code.
func (r *readerRig) responses(n int) map[uint64]string {
	r.t.Helper()
	got := map[uint64]string{}
	for len(got) < n {
		f := within(r.t, r.back, 5*time.Second, "a response")
		require.Equal(r.t, wire.FrameBatch, f.kind)
		require.NoError(r.t, forEachMessage(f.payload, 1<<30, new(wire.Header), func(h *wire.Header, p []byte) {
			require.NotZero(r.t, h.Flags&wire.FlagResponse)
			got[h.ID] = string(p)
			if h.Flags&wire.FlagFailure != 0 {
				f, err := wire.DecodeFailure(p)
				require.NoError(r.t, err)
				got[h.ID] = f.Code.String()
			}
		}))
	}
	return got
}

// TestReaderRefusesResponses: an acceptor sends responses back on the
// connection; a response from the connection's initiator breaks the
// protocol and ends it.
func TestReaderRefusesResponses(t *testing.T) {
	for _, lane := range []routing.Lane{routing.Small, routing.Large} {
		t.Run(lane.String(), func(t *testing.T) {
			r := newReaderRig(t, lane, nil)
			resp := wire.Header{ID: 8, Verb: 1, Flags: wire.FlagResponse}
			if lane == routing.Large {
				r.write(largeBegin(1, resp, 100))
			} else {
				r.write(batchFrame(message(resp, []byte("late"))))
			}
			assert.ErrorIs(t, r.end(), wire.ErrMalformed)
		})
	}
}

// TestReaderEndsOnBadInput: each breach of the protocol ends the
// connection with an error naming it, and leaves nothing held.
func TestReaderEndsOnBadInput(t *testing.T) {
	good := batchFrame(oneWay(1, []byte("x")))
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 1
	begin := largeBegin(1, wire.Header{ID: 1, Verb: 1}, 100<<10)
	var tooMany []byte
	for s := range maxInboundStreams + 1 {
		tooMany = append(tooMany, largeBegin(uint32(s+1), wire.Header{ID: uint64(s + 1), Verb: 1}, 100<<10)...)
	}
	giant := wire.AppendFrameHeader(nil, wire.FrameBatch, 0)
	binary.BigEndian.PutUint32(giant, 1<<31)
	headerOnly := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 1, PayloadLength: 10})
	overrun := append(wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 1, PayloadLength: 10}), 'x')
	for _, c := range []struct {
		name  string
		lane  routing.Lane
		input []byte
		want  error
		cut   bool // the connection ends after the input
	}{
		{"bad checksum", routing.Small, corrupt, wire.ErrChecksum, false},
		{"truncated header", routing.Small, good[:5], wire.ErrTruncated, true},
		{"truncated payload", routing.Small, good[:len(good)-1], wire.ErrTruncated, true},
		{"giant frame", routing.Small, giant, wire.ErrFrameTooLarge, false},
		{"batch on the large lane", routing.Large, good, wire.ErrMalformed, false},
		{"large part on a small lane", routing.Small, begin, wire.ErrMalformed, false},
		{"an acceptor's frame", routing.Small, anyFrame(wire.FrameBeat, 0, nil), wire.ErrMalformed, false},
		{"message header cut short", routing.Small, batchFrame(oneWay(1, []byte("x"))[:3]), wire.ErrTruncated, false},
		{"message overruns its frame", routing.Small, batchFrame(overrun), wire.ErrMalformed, false},
		{"a cancel on the large lane", routing.Large, largeBegin(1, wire.Header{ID: 1, Verb: 1, Flags: wire.FlagCancel}, 0), wire.ErrMalformed, false},
		{"oversized large header", routing.Large, anyFrame(wire.FrameLargeBegin, 1, make([]byte, wire.MaxHeaderSize+1)), wire.ErrMalformed, false},
		{"undecodable large header", routing.Large, anyFrame(wire.FrameLargeBegin, 1, []byte{0xff}), wire.ErrMalformed, false},
		{"large header with trailing bytes", routing.Large, anyFrame(wire.FrameLargeBegin, 1, append(headerOnly, 0)), wire.ErrMalformed, false},
		{"truncated large header", routing.Large, begin[:len(begin)-2], wire.ErrTruncated, true},
		{"oversized cancel", routing.Large, anyFrame(wire.FrameLargeCancel, 1, make([]byte, wire.MaxFailureMessage+17)), wire.ErrMalformed, false},
		{"undecodable cancel", routing.Large, anyFrame(wire.FrameLargeCancel, 1, nil), wire.ErrTruncated, false},
		{"part of no stream", routing.Large, anyFrame(wire.FrameLargeMore, 9, []byte("x")), wire.ErrMalformed, false},
		{"stream begun twice", routing.Large, append(append([]byte(nil), begin...), begin...), wire.ErrMalformed, false},
		{"too many streams", routing.Large, tooMany, wire.ErrMalformed, false},
		{"too many messages in a frame", routing.Small, batchFrame(manyMessages(wire.MaxBatchMessages + 1)...), wire.ErrMalformed, false},
		{"part overruns its message", routing.Large, append(append([]byte(nil), begin...),
			anyFrame(wire.FrameLargeMore, 1, make([]byte, 100<<10+1))...), wire.ErrMalformed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReaderRig(t, c.lane, nil)
			r.tr.Handle(1, newRecorder(false))
			go func() {
				go func() {
					for range r.back {
					}
				}()
				_, _ = r.far.Write(c.input)
				if c.cut {
					r.far.Close()
				}
			}()
			err := r.end()
			require.ErrorIs(t, err, c.want)
			assert.Zero(t, r.used(), "nothing held")
		})
	}
}

// manyMessages is n empty one-way messages.
func manyMessages(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = oneWay(uint64(i+1), nil)
	}
	return out
}

// TestReaderTakesAFramesBookkeeping: a frame of the most messages it may
// carry is read whole, and what its messages' bookkeeping holds beyond
// the limit is one frame's worth, given back as they are done.
func TestReaderTakesAFramesBookkeeping(t *testing.T) {
	r := newReaderRig(t, routing.Small, limitedTo(250<<10, 256<<10))
	h := newRecorder(true)
	r.tr.Handle(1, h, Ordered())
	r.write(batchFrame(oneWay(1, make([]byte, 250<<10)))) // a 256 KiB buffer: full
	within(t, h.got, 5*time.Second, "the first message")
	r.writeAsync(batchFrame(manyMessages(wire.MaxBatchMessages)...))
	eventually(t, func() bool { return r.in.throttled.Load() == 1 }, "the second frame to wait for room")
	close(h.gate)
	eventually(t, func() bool { return len(h.seen()) > 1 }, "the second frame read")
	assert.LessOrEqual(t, r.used(), int64(256<<10)+wire.MaxBatchMessages*workCost, "its bookkeeping beyond the limit: one frame's, no more")
	eventually(t, func() bool { return r.used() == 0 }, "all given back")
	assert.Len(t, h.seen(), 1+wire.MaxBatchMessages)
}

// TestReaderEndsWithAWaitingPause: a reader paused for capacity returns
// when its connection is closed, and gives back what it held.
func TestReaderEndsWithAWaitingPause(t *testing.T) {
	r := newReaderRig(t, routing.Small, limitedTo(250<<10, 256<<10))
	h := newRecorder(true)
	r.tr.Handle(1, h)
	r.write(batchFrame(oneWay(1, make([]byte, 250<<10))))
	within(t, h.got, 5*time.Second, "the first message")
	r.writeAsync(batchFrame(oneWay(2, make([]byte, 10))))
	eventually(t, func() bool { return r.in.throttled.Load() == 1 }, "the pause")
	r.ic.kill()
	require.ErrorIs(t, r.end(), net.ErrClosed)
	close(h.gate)
	eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
	assert.Equal(t, []uint64{1}, h.seen())
}

// TestReaderBeatsAndJudgesSilence: the acceptor beats every
// KeepaliveInterval, and a sender silent for the keepalive timeout is
// judged gone and counted as such.
func TestReaderBeatsAndJudgesSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := coreTransport(t, func(c *Config) { c.Timeouts.Keepalive = 2500 * time.Millisecond })
		p, err := tr.claimConn("n2", uint8(routing.Small))
		require.NoError(t, err)
		pc := newPipeConn()
		ic := newInConn(tr, p, routing.Small, pc.Conn, 0)
		ended := make(chan struct{})
		go func() { ic.serve(); close(ended) }()
		beats := make(chan time.Time, 16)
		go func() {
			var hdr [wire.FrameHeaderSize]byte
			for {
				if _, err := io.ReadFull(pc.peer, hdr[:]); err != nil {
					close(beats)
					return
				}
				fh, err := wire.ParseFrameHeader(hdr[:], 0)
				if err == nil && fh.Kind == wire.FrameBeat {
					beats <- time.Now()
				}
			}
		}()
		start := time.Now()
		var got []time.Duration
		for b := range beats {
			got = append(got, b.Sub(start))
		}
		<-ended
		// Beats at 1 s and 2 s (the first went with the handshake's
		// reply); at 2.5 s of silence the reader gives up.
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, got)
		assert.EqualValues(t, 1, tr.malformed[BadInputSilent].Load())
		pc.peer.Close()
	})
}

// TestReaderToleratesSilenceForAWholeKeepalive: the reader moves its read
// deadline only once a quarter of it has passed, so the deadline it waits
// on for the next frame may have been set up to a quarter of Keepalive
// before the last frame came. A peer silent for less than Keepalive since
// its last frame was judged gone: with Keepalive at its least, 2 s, after
// 1.55 s, though the wire format lets a peer be silent for up to 2 s and
// an initiator pings after 1 s. The silence is now measured from the last
// frame; a peer silent for the whole of Keepalive is still judged gone.
func TestReaderToleratesSilenceForAWholeKeepalive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const keepalive = 2 * time.Second
		r := newReaderRig(t, routing.Small, func(c *Config) { c.Timeouts.Keepalive = keepalive })
		ping := anyFrame(wire.FramePing, 0, nil)
		synctest.Wait() // the reader waits for a first frame, its deadline set
		time.Sleep(450 * time.Millisecond)
		r.write(ping) // read before a quarter of Keepalive passed: the deadline stays
		synctest.Wait()

		time.Sleep(keepalive - 50*time.Millisecond) // silent, for less than Keepalive
		synctest.Wait()
		select {
		case err := <-r.ended:
			r.ended <- err // for the cleanup
			t.Fatalf("the reader gave up on a peer silent for less than Keepalive (%v): %v", keepalive, err)
		default:
		}
		r.write(ping)
		synctest.Wait()

		time.Sleep(keepalive) // silent for the whole of Keepalive
		synctest.Wait()
		err := within(t, r.ended, time.Nanosecond, "the reader to judge the silent peer gone")
		r.ended <- err // for the cleanup
		require.True(t, isTimeout(err), "read: %v", err)
	})
}

// TestReaderGivesAFrameAWholeKeepalive: Keepalive bounds how long one
// frame may take to arrive, from its first byte; but the deadline set as
// a frame began stayed as it was when the last was set less than a
// quarter of Keepalive before, so a frame that began just after another
// was cut off after as little as 0.75 x Keepalive: with Keepalive at 2 s,
// a frame that took 1.6 s. A frame slower than Keepalive is still cut off
// (TestTrickledFrameIsCutOffWithinKeepalive).
func TestReaderGivesAFrameAWholeKeepalive(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
		cut   int // bytes of it written before the pause
	}{
		{"plain", batchFrame(oneWay(1, make([]byte, 100))), wire.FrameHeaderSize + 8},
		// Its block's length is peeked first, before the room for the
		// batch is taken.
		{"compressed", batchS2Frame(oneWay(1, jsonPayload(1, 4000))), wire.FrameHeaderSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const keepalive = 2 * time.Second
				r := newReaderRig(t, routing.Small, func(c *Config) { c.Timeouts.Keepalive = keepalive })
				h := newRecorder(false)
				r.tr.Handle(1, h)
				synctest.Wait() // the reader waits for a first frame, its deadline set
				time.Sleep(450 * time.Millisecond)
				r.write(anyFrame(wire.FramePing, 0, nil)) // the deadline stays
				synctest.Wait()
				r.write(c.frame[:c.cut]) // a frame begins
				synctest.Wait()

				time.Sleep(1600 * time.Millisecond) // it has taken 1.6 s of its 2 so far
				synctest.Wait()
				select {
				case err := <-r.ended:
					r.ended <- err // for the cleanup
					t.Fatalf("the reader cut off a frame that had taken less than Keepalive (%v): %v", keepalive, err)
				default:
				}
				r.write(c.frame[c.cut:])
				within(t, h.got, time.Second, "the frame's message")
			})
		})
	}
}

// FuzzReader feeds arbitrary bytes to a reader, as a peer past its
// handshake could send them: whatever they are, the reader ends once the
// connection does, and everything it took — capacity, buffers, handler
// goroutines — is given back.
func FuzzReader(f *testing.F) {
	begin := largeBegin(1, wire.Header{ID: 1, Verb: 1}, 1000)
	f.Add(uint8(routing.Small), batchFrame(oneWay(1, []byte("x")), oneWay(2, nil)))
	f.Add(uint8(routing.Small), batchFrame(message(wire.Header{ID: 3, Verb: 1, Flags: wire.FlagExpectsResponse}, []byte("q"))))
	f.Add(uint8(routing.Large), append(largeBegin(1, wire.Header{ID: 4, Verb: 1, Flags: wire.FlagExpectsResponse}, 10), anyFrame(wire.FrameLargeMore, 1, make([]byte, 10))...))
	f.Add(uint8(routing.Small), anyFrame(wire.FrameGrant, 1, nil))
	f.Add(uint8(routing.Urgent), append(anyFrame(wire.FramePing, 0, nil), batchFrame(oneWay(1, make([]byte, 300)))...))
	f.Add(uint8(routing.Large), append(append([]byte(nil), begin...), anyFrame(wire.FrameLargeMore, 1, make([]byte, 1000))...))
	f.Add(uint8(routing.Large), append(append([]byte(nil), begin...), anyFrame(wire.FrameLargeMore, 1, make([]byte, 10))...))
	f.Add(uint8(routing.Large), append(largeBegin(2, wire.Header{ID: 1, Verb: 2}, 100), anyFrame(wire.FrameLargeMore, 2, make([]byte, 100))...))
	f.Add(uint8(routing.Large), append(append([]byte(nil), begin...),
		anyFrame(wire.FrameLargeCancel, 1, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureCanceled}))...))
	f.Add(uint8(routing.Small), []byte{0, 0, 0, 5, 0, 0, 0, 0, 1, 2, 3, 4, 5})

	tr := coreTransport(f, func(c *Config) {
		c.Memory.MaxMessageSize = 256 << 10
		c.Memory.Inbound = Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 512 << 10}
	})
	tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
	tr.HandleReader(2, ReaderHandlerFunc(func(_ context.Context, _ *Message, body io.Reader) ([]byte, error) {
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}))
	f.Fuzz(func(t *testing.T, lane uint8, input []byte) {
		readFuzzed(t, tr, routing.Lane(lane%uint8(routing.NumLanes)), 0, 0, input)
	})
}

// readFuzzed has a reader of a connection of lane, whose handshake agreed
// caps, read input, and checks that it ends once the connection does and
// gives back what it took; filled is what the test holds of the peer's
// room meanwhile.
func readFuzzed(t *testing.T, tr *Transport, lane routing.Lane, caps wire.Capabilities, filled int64, input []byte) {
	p, err := tr.claimConn("n2", uint8(lane))
	require.NoError(t, err)
	defer tr.releaseConn(p, uint8(lane))
	if filled > 0 {
		require.True(t, p.inAccount.TryTake(filled))
		defer p.inAccount.Release(filled)
	}
	pc := newPipeConn()
	ic := newInConn(tr, p, lane, pc.Conn, caps)
	ended := make(chan struct{})
	go func() { ic.serve(); close(ended) }()
	go func() { _, _ = io.Copy(io.Discard, pc.peer) }() // the back channel
	_ = pc.peer.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := pc.peer.Write(input); isTimeout(err) {
		t.Fatal("the reader stopped reading")
	}
	pc.peer.Close()
	within(t, ended, 5*time.Second, "the reader to end")
	eventually(t, func() bool {
		return !ic.dispatch.busy() && ic.account.Used() == 0 && p.inAccount.Used() == filled &&
			tr.rejectedS2.Root().Used() == 0 && tr.urgentOverdrafts.Load() == 0
	}, "everything given back")
}

// TestReaderAnswersRequests: a request's handler result goes back as its
// response; a request for an unknown verb and one whose handler panics
// are answered with failures; a one-way handler's error is noted, not
// answered; a handler sees the message's deadline.
func TestReaderAnswersRequests(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	deadline := make(chan time.Time, 1)
	r.tr.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		if d, ok := ctx.Deadline(); ok {
			deadline <- d
		}
		return append([]byte("re:"), m.Payload...), nil
	}))
	r.tr.Handle(2, HandlerFunc(func(context.Context, *Message) ([]byte, error) { panic("boom") }))
	r.tr.Handle(3, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, errors.New("no") }))
	before := time.Now()
	req := wire.FlagExpectsResponse
	r.write(batchFrame(
		message(wire.Header{ID: 1, Verb: 1, Flags: req, TTL: int64(time.Hour)}, []byte("q")),
		message(wire.Header{ID: 2, Verb: 9, Flags: req}, nil),
		message(wire.Header{ID: 3, Verb: 2, Flags: req}, nil),
		message(wire.Header{ID: 4, Verb: 3}, nil)))
	d := within(t, deadline, 5*time.Second, "the handler")
	assert.WithinRange(t, d, before.Add(time.Hour), time.Now().Add(time.Hour), "its arrival plus its TTL")
	eventually(t, func() bool { return r.in.handlerErrors.Load() == 1 }, "the one-way failure noted")
	eventually(t, func() bool { return r.in.received.Load() == 3 }, "three handed to their handlers") // requests run concurrently
	assert.EqualValues(t, 1, r.in.dropped[ReasonUnknownVerb].Load())

	// The answers go back on the connection.
	assert.Equal(t, map[uint64]string{1: "re:q", 2: wire.FailureUnknownVerb.String(), 3: wire.FailureHandlerError.String()}, r.responses(3))
}
