package transport

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// grantingRequester is the capabilities of a requester that grants large
// responses (it did not offer CapEagerResponses).
const grantingRequester = ^wire.CapEagerResponses

// TestReplyLargeResponseWaitsForItsGrant: a response above the large
// threshold goes back on the request's connection in parts, none before
// the requester grants it room (CapEagerResponses not agreed); a refused
// one ends as the requester's reason, handed to OnDropped.
func TestReplyLargeResponseWaitsForItsGrant(t *testing.T) {
	r := newReaderRigAgreeing(t, routing.Small, grantingRequester, nil)
	r.tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		return make([]byte, 100<<10), nil
	}))
	req := wire.FlagExpectsResponse
	r.write(batchFrame(message(wire.Header{ID: 1, Verb: 1, Flags: req}, nil)))
	begin := within(t, r.back, 5*time.Second, "the response's first frame")
	require.Equal(t, wire.FrameLargeBegin, begin.kind)
	h, _, err := wire.DecodeHeader(begin.payload, 1<<30)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), h.ID)
	assert.NotZero(t, h.Flags&wire.FlagResponse)
	select {
	case f := <-r.back:
		t.Fatalf("a %v frame before the grant", f.kind)
	case <-time.After(50 * time.Millisecond):
	}
	r.write(anyFrame(wire.FrameGrant, begin.stream, nil))
	got := 0
	for got < 100<<10 {
		f := within(t, r.back, 5*time.Second, "a part")
		require.Equal(t, wire.FrameLargeMore, f.kind)
		require.Equal(t, begin.stream, f.stream)
		got += len(f.payload)
	}
	assert.Equal(t, 100<<10, got)
	out := &r.ic.peer.outbound[routing.Small]
	eventually(t, func() bool { return out.sent.Load() == 1 }, "the response counted as sent")

	r.write(batchFrame(message(wire.Header{ID: 2, Verb: 1, Flags: req}, nil)))
	begin = within(t, r.back, 5*time.Second, "the second response's first frame")
	r.write(anyFrame(wire.FrameRefuse, begin.stream, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded})))
	d := within(t, r.drops, 5*time.Second, "the refused response")
	assert.True(t, d.Response)
	assert.Equal(t, uint64(2), d.ID)
	assert.Equal(t, ReasonOverloaded, d.Reason)
	assert.EqualValues(t, 1, out.dropped[ReasonOverloaded].Load())
	eventually(t, func() bool { return r.ic.answerer().account.Used() == 0 }, "its room given back")
}

// TestReplyEagerLargeResponse: with CapEagerResponses agreed, a large
// response's parts follow its FrameLargeBegin with no grant; a refusal
// that comes while parts are still to be written withdraws the rest with
// a FrameLargeCancel, and the response ends as the requester's reason.
func TestReplyEagerLargeResponse(t *testing.T) {
	r := newReaderRig(t, routing.Small, func(c *Config) { c.Memory.MaxMessageSize = 8 << 20 })
	r.tr.maxFrame = 4 << 10 // a part per frame: 1024 of them
	r.tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		return make([]byte, 4<<20), nil
	}))
	r.write(batchFrame(message(wire.Header{ID: 1, Verb: 1, Flags: wire.FlagExpectsResponse}, nil)))
	begin := within(t, r.back, 5*time.Second, "the response's first frame")
	require.Equal(t, wire.FrameLargeBegin, begin.kind)
	part := within(t, r.back, 5*time.Second, "a part, ungranted")
	require.Equal(t, frame{wire.FrameLargeMore, begin.stream, part.payload}, part)

	// The writer is held by the unread frames (after at most one more
	// look at its inbox) until the refusal has reached it.
	eventually(t, func() bool { return len(r.back) == cap(r.back) }, "the writer held")
	r.write(anyFrame(wire.FrameRefuse, begin.stream, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureExpired})))
	eventually(t, func() bool { // delivered, or applied by a last look
		r.ic.answerer().parts.mu.Lock()
		defer r.ic.answerer().parts.mu.Unlock()
		return len(r.ic.answerer().parts.inbox) == 1 || len(r.drops) > 0
	}, "the refusal delivered")
	got := len(part.payload)
	for {
		f := within(t, r.back, 5*time.Second, "the rest")
		require.Equal(t, begin.stream, f.stream)
		if f.kind == wire.FrameLargeCancel {
			break
		}
		require.Equal(t, wire.FrameLargeMore, f.kind)
		got += len(f.payload)
	}
	assert.Less(t, got, 4<<20, "withdrawn before its end")
	d := within(t, r.drops, 5*time.Second, "the refused response")
	assert.Equal(t, ReasonExpired, d.Reason)
	assert.Equal(t, uint64(1), d.ID)
	eventually(t, func() bool { return r.ic.answerer().account.Used() == 0 }, "its room given back")
}

// TestReplyGrantsForNothingAreNotKept: grants and refusals the requester
// sends for responses this node is not sending were kept in the reply
// writer's inbox, which only a running writer empties: 10,000 of them,
// sent while no response was in flight, were all held for the
// connection's life. Those that can apply to nothing are dropped, and a
// peer that floods them while responses are in flight is cut off.
func TestReplyGrantsForNothingAreNotKept(t *testing.T) {
	r := newReaderRig(t, routing.Small, func(c *Config) { c.Memory.MaxMessageSize = 8 << 20 })
	r.tr.maxFrame = 4 << 10 // a response's part per frame
	refusal := anyFrame(wire.FrameRefuse, 7, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureExpired}))
	grant := anyFrame(wire.FrameGrant, 8, nil)
	for range 5000 {
		r.write(refusal)
		r.write(grant)
	}
	r.write(batchFrame(message(wire.Header{ID: 1, Verb: 99}, nil))) // read after them all
	eventually(t, func() bool { return r.in.dropped[ReasonUnknownVerb].Load() == 1 }, "the frames read")
	r.ic.answerer().parts.mu.Lock()
	held := len(r.ic.answerer().parts.inbox)
	r.ic.answerer().parts.mu.Unlock()
	assert.Zero(t, held, "grants and refusals kept with no response in flight")

	// With a response in flight (its writer held by unread frames), a
	// flood of them for it (stream 1, the first begun) ends the
	// connection as bad input; those for a stream not in flight still
	// apply to nothing.
	r.tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		return make([]byte, 4<<20), nil
	}))
	r.write(batchFrame(message(wire.Header{ID: 2, Verb: 1, Flags: wire.FlagExpectsResponse}, nil)))
	eventually(t, func() bool { return len(r.back) == cap(r.back) }, "the writer held")
	// The writer may finish the write under way and empty the inbox once
	// more before its next write holds it: twice the inbox overflows it
	// whenever that happens.
	flood := bytes.Repeat(grant, 2*maxInbox+1)
	flood = append(flood, bytes.Repeat(anyFrame(wire.FrameGrant, 1, nil), 2*maxInbox+1)...)
	_, _ = r.far.Write(flood)
	assert.ErrorIs(t, r.end(), wire.ErrMalformed)
	for range r.back { // what the writer wrote before the connection ended
	}
}

// TestReplyResponsesFailWithTheirConnection: responses still queued when
// the connection ends fail with it, each once, and give back their room;
// a response after that is refused at once.
func TestReplyResponsesFailWithTheirConnection(t *testing.T) {
	r := newReaderRigAgreeing(t, routing.Small, grantingRequester, nil)
	gate := make(chan struct{})
	r.tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		<-gate
		return make([]byte, 100<<10), nil // large: it waits for a grant that never comes
	}))
	req := wire.FlagExpectsResponse
	r.write(batchFrame(message(wire.Header{ID: 1, Verb: 1, Flags: req}, nil)))
	close(gate)
	require.Equal(t, wire.FrameLargeBegin, within(t, r.back, 5*time.Second, "the response begun").kind)
	r.far.Close()
	require.Error(t, r.end())
	d := within(t, r.drops, 5*time.Second, "the response failed")
	assert.Equal(t, ReasonConnectionReset, d.Reason)
	assert.Equal(t, uint64(1), d.ID)
	eventually(t, func() bool { return r.ic.answerer().account.Used() == 0 }, "its room given back")

	h := wire.Header{ID: 3, Flags: wire.FlagResponse}
	err := r.tr.sendOn(context.Background(), r.ic.answerer(), &h, 0, []byte("late"), false)
	assert.ErrorIs(t, err, ErrConnectionReset)
	assert.Empty(t, r.drops, "one outcome each")
}

// TestOwnResponse: which responses are copied out of their request's
// buffer. A large request's lent buffer was kept for any response in it,
// so a handler answering with a few bytes of a 1 MiB request held the
// whole MiB while the response's queue counted those few bytes: unread
// answers held many times their limit.
func TestOwnResponse(t *testing.T) {
	buf := make([]byte, 1<<20)
	other := make([]byte, 16)
	tests := []struct {
		name   string
		resp   []byte
		lent   bool
		copied bool
	}{
		{"not in the buffer", other, false, false},
		{"not in the buffer, large request", other, true, false},
		{"in a batch frame", buf[100:200], false, true},
		{"the whole large request (an echo)", buf, true, false},
		{"half of the large request", buf[:len(buf)/2], true, false},
		{"a few bytes of the large request", buf[:8], true, true},
		{"a few bytes at its end", buf[len(buf)-8:], true, true},
		{"empty", buf[:0], true, false},
	}
	for _, tt := range tests {
		got := ownResponse(tt.resp, buf, tt.lent)
		assert.Equal(t, tt.resp, got, tt.name)
		assert.Equal(t, tt.copied, len(got) > 0 && !aliases(got, tt.resp), tt.name)
	}
}

// TestReplyExpiredWhileWaitingForTheBackChannelIsNotWritten: the reply
// writer goroutine looked at the clock, then waited for the back channel,
// held here as by a beat stuck in a full socket, and wrote the response
// once it had it, by then past its request's deadline, as though it were
// still live: counted as sent, with a TTL left that it did not have. A
// response expired when it is written is dropped as expired.
func TestReplyExpiredWhileWaitingForTheBackChannelIsNotWritten(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	handled := make(chan struct{})
	r.tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) {
		close(handled)
		return []byte("late"), nil
	}))
	const ttl = 100 * time.Millisecond
	r.ic.backMu.Lock()
	r.write(batchFrame(message(wire.Header{ID: 1, Verb: 1, Flags: wire.FlagExpectsResponse, TTL: int64(ttl)}, nil)))
	within(t, handled, 5*time.Second, "the request handled")
	handledBy := time.Now() // the request arrived before: its deadline is before handledBy+ttl
	eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*replyWriter).writeSmall("))
	}, "the reply writer waiting for the back channel")
	<-time.After(time.Until(handledBy.Add(ttl)) + time.Millisecond) // its deadline passes
	r.ic.backMu.Unlock()

	d := within(t, r.drops, 5*time.Second, "the response dropped")
	assert.Equal(t, ReasonExpired, d.Reason)
	assert.Equal(t, uint64(1), d.ID)
	assert.Zero(t, r.ic.peer.outbound[routing.Small].sent.Load(), "an expired response written")
	eventually(t, func() bool { return r.ic.answerer().account.Used() == 0 }, "its room given back")
}
