package transport

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// backRig is the back channel of one outbound connection, read by a
// responseReader over a pipe: the test plays the acceptor.
type backRig struct {
	t     *testing.T
	tr    *Transport
	p     *peer
	c     *outConn
	far   net.Conn // the acceptor's end
	ended chan string
}

const backSerial = 7 // the rig's connection

func newBackRig(t *testing.T, lane routing.Lane, tweak func(*Config)) *backRig {
	return newBackRigAgreeing(t, lane, 0, tweak)
}

// newBackRigAgreeing is newBackRig on a connection whose handshake agreed
// caps.
func newBackRigAgreeing(t *testing.T, lane routing.Lane, caps wire.Capabilities, tweak func(*Config)) *backRig {
	r := &backRig{t: t, ended: make(chan string, 1)}
	r.tr = coreTransport(t, tweak)
	p, err := r.tr.peerFor("n2", true)
	require.NoError(t, err)
	r.p, r.c = p, p.lane(lane)
	// As if its writer were busy: the grants and refusals the reader asks
	// for stay queued for the test to read (control), where the reader's
	// wakeWriter would start a writer to take them.
	r.c.running.Store(true)
	pc := newPipeConn()
	r.far = pc.peer
	conn := &liveConn{Conn: pc.Conn, serial: backSerial, caps: caps}
	r.tr.wg.Add(1)
	go func() {
		rx := newResponseReader(r.c, conn)
		why := rx.read()
		rx.abandonAll()
		conn.Close()
		r.tr.wg.Done()
		r.ended <- why
	}()
	t.Cleanup(func() {
		r.far.Close()
		within(t, r.ended, 5*time.Second, "the back-channel reader to end")
		r.c.running.Store(false) // no writer for the transport's Close to wait for
	})
	return r
}

func (r *backRig) write(b []byte) {
	r.t.Helper()
	require.NoError(r.t, r.far.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := r.far.Write(b)
	require.NoError(r.t, err)
}

// call registers a request to n2 waiting for its response.
func (r *backRig) call(id uint64) chan callResult {
	done := make(chan callResult, 1)
	r.tr.calls.add(id, &call{peer: "n2", done: done})
	return done
}

// control is what the reader asked the lane's writer to send back.
func (r *backRig) control() []ctrlFrame {
	r.c.ctrlMu.Lock()
	defer r.c.ctrlMu.Unlock()
	return append([]ctrlFrame(nil), r.c.ctrl...)
}

func response(id uint64, payload []byte) []byte {
	return message(wire.Header{ID: id, Verb: 1, Flags: wire.FlagResponse}, payload)
}

// TestBackChannelCompletesCalls: responses in a batch complete their
// calls; one nobody waits for is dropped as expired; a failure for nobody
// is the peer's report of a message of ours it dropped; a response for
// another peer's call does not complete it.
func TestBackChannelCompletesCalls(t *testing.T) {
	r := newBackRig(t, routing.Small, nil)
	mine := r.call(1)
	theirs := make(chan callResult, 1)
	r.tr.calls.add(9, &call{peer: "n3", done: theirs})
	failure := wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded})
	r.write(batchFrame(response(1, []byte("answer")),
		response(8, []byte("late")),
		message(wire.Header{ID: 8, Verb: 1, Flags: wire.FlagResponse | wire.FlagFailure}, failure),
		response(9, []byte("not yours"))))
	res := within(t, mine, 5*time.Second, "the response")
	assert.Equal(t, "answer", string(res.payload))
	in := &r.p.inbound[routing.Small]
	eventually(t, func() bool {
		return in.dropped[ReasonExpired].Load() == 2 && in.remoteDropped[ReasonOverloaded].Load() == 1
	}, "the drops counted")
	assert.EqualValues(t, 1, in.received.Load())
	assert.True(t, r.tr.calls.waiting(9, "n3"), "n3's call still waits")
	assert.Zero(t, r.p.inAccount.Used(), "the frame's buffer given back")
}

// TestBackChannelIgnoresInboundLimits: responses are read while the
// peer's inbound capacity is all taken — by its requests to this node,
// paused — so this node's own calls never wait behind them.
func TestBackChannelIgnoresInboundLimits(t *testing.T) {
	r := newBackRig(t, routing.Small, limitedTo(250<<10, 256<<10))
	full := r.p.inAccount.Limit()
	require.True(t, r.p.inAccount.TryTake(full), "the peer's requests hold all of it")
	done := r.call(5)
	r.write(batchFrame(response(5, make([]byte, 100<<10))))
	res := within(t, done, 5*time.Second, "the response")
	assert.Len(t, res.payload, 100<<10)
	eventually(t, func() bool { return r.p.inAccount.Used() == full }, "the frame's overdraft given back")
	r.p.inAccount.Release(full)
}

// TestBackChannelLargeResponse: a large response is granted room when it
// begins, on the connection it came on, and completes its call with the
// room given back; one nobody waits for, one above the size limit and one
// with no room are refused before a byte of it travels, and the calls of
// the last two fail.
func TestBackChannelLargeResponse(t *testing.T) {
	r := newBackRig(t, routing.Small, limitedTo(200<<10, 256<<10))
	done := r.call(50)
	r.write(largeBegin(1, wire.Header{ID: 50, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	eventually(t, func() bool { return len(r.control()) == 1 }, "the grant")
	assert.Equal(t, ctrlFrame{kind: wire.FrameGrant, stream: 1, serial: backSerial}, r.control()[0])
	assert.Positive(t, r.p.inAccount.Used(), "room held while it arrives")
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 60<<10)))
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 40<<10)))
	res := within(t, done, 5*time.Second, "the response")
	assert.Len(t, res.payload, 100<<10)
	assert.Zero(t, r.p.inAccount.Used())

	// With the peer's capacity all taken, a response may still have one
	// connection's limit beyond it: 53 has; 54 finds no more.
	tooBig, overdrawn, noRoom := r.call(52), r.call(53), r.call(54)
	r.write(largeBegin(2, wire.Header{ID: 51, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(largeBegin(3, wire.Header{ID: 52, Verb: 1, Flags: wire.FlagResponse}, 300<<10))
	full := r.p.inAccount.Limit()
	require.True(t, r.p.inAccount.TryTake(full))
	r.write(largeBegin(4, wire.Header{ID: 53, Verb: 1, Flags: wire.FlagResponse}, 200<<10))
	r.write(largeBegin(5, wire.Header{ID: 54, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	eventually(t, func() bool { return len(r.control()) == 5 }, "the refusals and the grant")
	ctrl := r.control()
	assert.Equal(t, ctrlFrame{kind: wire.FrameGrant, stream: 4, serial: backSerial}, ctrl[3])
	for i, want := range map[int]wire.FailureCode{1: wire.FailureExpired, 2: wire.FailureTooLarge, 4: wire.FailureOverloaded} {
		assert.Equal(t, wire.FrameRefuse, ctrl[i].kind)
		assert.Equal(t, uint32(1+i), ctrl[i].stream)
		failure, err := wire.DecodeFailure(ctrl[i].payload)
		require.NoError(t, err)
		assert.Equal(t, want, failure.Code)
	}
	assert.ErrorIs(t, within(t, tooBig, 5*time.Second, "the too-large call").err, ErrTooLarge)
	assert.ErrorIs(t, within(t, noRoom, 5*time.Second, "the call with no room").err, ErrOverloaded)
	r.write(anyFrame(wire.FrameLargeMore, 4, make([]byte, 200<<10)))
	assert.Len(t, within(t, overdrawn, 5*time.Second, "the overdrawn call").payload, 200<<10)
	eventually(t, func() bool { return r.p.inAccount.Used() == full }, "the overdraft given back")
	r.p.inAccount.Release(full)
}

// TestBackChannelEagerResponses: with CapEagerResponses agreed, a large
// response's parts follow its FrameLargeBegin and no grant is written
// (one would go out behind the connection's own frames); a refused
// response's parts are read and dropped until they end or the acceptor
// withdraws it, and the connection goes on.
func TestBackChannelEagerResponses(t *testing.T) {
	r := newBackRigAgreeing(t, routing.Small, wire.CapEagerResponses, limitedTo(200<<10, 256<<10))
	done := r.call(50)
	r.write(largeBegin(1, wire.Header{ID: 50, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 60<<10)))
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 40<<10)))
	assert.Len(t, within(t, done, 5*time.Second, "the response").payload, 100<<10)
	assert.Empty(t, r.control(), "no grant")

	// Nobody waits for 51: refused, and its parts, all of them, dropped.
	r.write(largeBegin(2, wire.Header{ID: 51, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(anyFrame(wire.FrameLargeMore, 2, make([]byte, 60<<10)))
	r.write(anyFrame(wire.FrameLargeMore, 2, make([]byte, 40<<10)))
	// Nor for 52: refused, and withdrawn after a part; its stream is free
	// again.
	r.write(largeBegin(3, wire.Header{ID: 52, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(anyFrame(wire.FrameLargeMore, 3, make([]byte, 10<<10)))
	r.write(anyFrame(wire.FrameLargeCancel, 3, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureExpired})))
	done = r.call(53)
	r.write(largeBegin(3, wire.Header{ID: 53, Verb: 1, Flags: wire.FlagResponse}, 50<<10))
	r.write(anyFrame(wire.FrameLargeMore, 3, make([]byte, 50<<10)))
	assert.Len(t, within(t, done, 5*time.Second, "the response on the reused stream").payload, 50<<10)
	ctrl := r.control()
	require.Len(t, ctrl, 2, "the refusals of 51 and 52, and nothing else")
	for i, stream := range []uint32{2, 3} {
		assert.Equal(t, wire.FrameRefuse, ctrl[i].kind)
		assert.Equal(t, stream, ctrl[i].stream)
	}
	assert.Zero(t, r.p.inAccount.Used())
	assert.EqualValues(t, 2, r.p.inbound[routing.Small].dropped[ReasonExpired].Load())

	// A part beyond what a refused response announced is bad input.
	r.write(largeBegin(4, wire.Header{ID: 54, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	_, _ = r.far.Write(anyFrame(wire.FrameLargeMore, 4, make([]byte, 101<<10))) // cut off at its header
	assert.Equal(t, "bad back-channel input", within(t, r.ended, 5*time.Second, "the reader to end"))
	r.ended <- "" // for the cleanup
}

// TestBackChannelFailsOnlyItsPeersCalls: a large response that is too
// large, or finds no room, failed the call with its ID whoever the call
// had asked, so a peer could fail another node's call by naming its ID.
// It now fails only a call to that peer, as a response completes one.
func TestBackChannelFailsOnlyItsPeersCalls(t *testing.T) {
	r := newBackRig(t, routing.Small, limitedTo(200<<10, 256<<10))
	other := make(chan callResult, 2)
	r.tr.calls.add(70, &call{peer: "n3", done: other})
	r.tr.calls.add(71, &call{peer: "n3", done: other})
	r.write(largeBegin(1, wire.Header{ID: 70, Verb: 1, Flags: wire.FlagResponse}, 300<<10)) // too large
	full := r.p.inAccount.Limit()
	require.True(t, r.p.inAccount.TryTake(full))
	defer r.p.inAccount.Release(full)
	r.write(largeBegin(2, wire.Header{ID: 71, Verb: 1, Flags: wire.FlagResponse}, 250<<10)) // no room
	eventually(t, func() bool { return len(r.control()) == 2 }, "both refused")
	select {
	case res := <-other:
		t.Fatalf("n2's response failed n3's call: %v", res.err)
	default:
	}
	assert.True(t, r.tr.calls.waiting(70, "n3"))
	assert.True(t, r.tr.calls.waiting(71, "n3"))
}

// TestBackChannelWithdrawnAndCutResponses: a large response its sender
// withdraws fails its call with the sender's reason; one cut short by the
// connection ending gives back its room (its call fails with the
// connection, in calls.failConn).
func TestBackChannelWithdrawnAndCutResponses(t *testing.T) {
	r := newBackRig(t, routing.Large, nil)
	withdrawn := r.call(60)
	r.call(61)
	r.write(largeBegin(1, wire.Header{ID: 60, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(largeBegin(2, wire.Header{ID: 61, Verb: 1, Flags: wire.FlagResponse}, 100<<10))
	r.write(anyFrame(wire.FrameLargeMore, 2, make([]byte, 10)))
	r.write(anyFrame(wire.FrameLargeCancel, 1, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureExpired})))
	var remote *RemoteError
	require.ErrorAs(t, within(t, withdrawn, 5*time.Second, "the withdrawn call").err, &remote)
	assert.Equal(t, wire.FailureExpired, remote.Code)
	r.far.Close()
	assert.Equal(t, "closed by peer", within(t, r.ended, 5*time.Second, "the reader to end"))
	r.ended <- "" // for the cleanup
	assert.Zero(t, r.p.inAccount.Used())
	in := &r.p.inbound[routing.Large]
	assert.EqualValues(t, 1, in.dropped[ReasonExpired].Load())
	assert.EqualValues(t, 1, in.dropped[ReasonConnectionReset].Load())
}

// TestBackChannelEndsOnBadInput: what an acceptor may not send ends the
// connection, and so does a frame whose checksum does not match: a beat
// or a grant, which carry no payload, were taken unchecked, and a flipped
// bit in a grant's stream number granted a message that was never granted.
func TestBackChannelEndsOnBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		lane  routing.Lane
		input []byte
	}{
		{"a message that is not a response", routing.Small, batchFrame(oneWay(1, nil))},
		{"a large message that is not a response", routing.Large, largeBegin(1, wire.Header{ID: 1, Verb: 1}, 10)},
		{"a grant on a small lane", routing.Small, anyFrame(wire.FrameGrant, 1, nil)},
		{"a ping", routing.Small, anyFrame(wire.FramePing, 0, nil)},
		{"a part of no stream", routing.Large, anyFrame(wire.FrameLargeMore, 3, []byte("x"))},
		// Frames with no payload: their checksum covers their header
		// alone, which no payload read checks.
		{"a beat with a bad checksum", routing.Small, damaged(anyFrame(wire.FrameBeat, 0, nil))},
		{"a grant with a bad checksum", routing.Large, damaged(anyFrame(wire.FrameGrant, 1, nil))},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newBackRig(t, c.lane, nil)
			go func() { _, _ = r.far.Write(c.input) }()
			assert.Equal(t, "bad back-channel input", within(t, r.ended, 5*time.Second, "the reader to end"))
			r.ended <- ""
			assert.Zero(t, r.p.inAccount.Used())
		})
	}
}

// damaged returns frame with the last bit of its header's checksum flipped.
func damaged(frame []byte) []byte {
	frame[wire.FrameHeaderSize-1] ^= 1
	return frame
}

// TestBackChannelLargeResponseRoomAtItsLength: a large response whose
// buffer's pool class (320 KiB for 300 KiB) is more than the room its
// length needs takes room at its length when the class does not fit:
// within the peer's capacity, which holds it and not its class, and, that
// full, within one connection's limit beyond it, as the package doc says.
// The class was all it asked for, and both calls failed ErrOverloaded.
func TestBackChannelLargeResponseRoomAtItsLength(t *testing.T) {
	const size = 300 << 10
	r := newBackRig(t, routing.Small, limitedTo(size, 310<<10))
	inCapacity := r.call(60)
	r.write(largeBegin(1, wire.Header{ID: 60, Verb: 1, Flags: wire.FlagResponse}, size))
	eventually(t, func() bool { return len(r.control()) == 1 }, "the answer to the first")
	assert.Equal(t, wire.FrameGrant, r.control()[0].kind, "within the peer's capacity")
	assert.EqualValues(t, size, r.p.inAccount.Used(), "room taken at its length")
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 256<<10)))
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, size-256<<10)))
	res := within(t, inCapacity, 5*time.Second, "the first response")
	require.NoError(t, res.err)
	assert.Len(t, res.payload, size)
	assert.Zero(t, r.p.inAccount.Used())

	full := r.p.inAccount.Limit()
	require.True(t, r.p.inAccount.TryTake(full), "the peer's requests hold all of it")
	beyond := r.call(61)
	r.write(largeBegin(2, wire.Header{ID: 61, Verb: 1, Flags: wire.FlagResponse}, size))
	eventually(t, func() bool { return len(r.control()) == 2 }, "the answer to the second")
	assert.Equal(t, wire.FrameGrant, r.control()[1].kind, "within one connection's limit beyond it")
	r.write(anyFrame(wire.FrameLargeMore, 2, make([]byte, 256<<10)))
	r.write(anyFrame(wire.FrameLargeMore, 2, make([]byte, size-256<<10)))
	res = within(t, beyond, 5*time.Second, "the second response")
	require.NoError(t, res.err)
	assert.Len(t, res.payload, size)
	eventually(t, func() bool { return r.p.inAccount.Used() == full }, "the overdraft given back")
	r.p.inAccount.Release(full)
}
