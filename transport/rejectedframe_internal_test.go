package transport

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// fullRejectingRig is a reader rig whose node is full under
// OverloadReject: a one-way message held by its handler takes all of its
// 256 KiB, and every frame after it is rejected. The returned func
// releases the handler.
func fullRejectingRig(t *testing.T) (*readerRig, func()) {
	r := newReaderRig(t, routing.Small, func(c *Config) {
		c.Memory.MaxMessageSize = 250 << 10
		c.Memory.Inbound = Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		c.Memory.InboundOverload = OverloadReject
	})
	h := newRecorder(true)
	r.tr.Handle(1, h)
	r.write(batchFrame(oneWay(1, make([]byte, 250<<10))))
	within(t, h.got, 5*time.Second, "the message that fills the node")
	return r, func() { close(h.gate) }
}

// TestReaderRejectedFrameReadInPieces: a rejected batch frame is read
// through a buffer smaller than it (rejectBatch), a piece at a time. Its
// messages are answered all the same, whatever their shape: a header of
// about 4 KiB (a parameter block) and payloads that span the pieces, a
// one-way message, a cancel, one above MaxMessageSize.
func TestReaderRejectedFrameReadInPieces(t *testing.T) {
	r, release := fullRejectingRig(t)
	defer release()
	params := wire.AppendParam(nil, "trace", make([]byte, 4000))
	r.write(batchFrame(
		message(wire.Header{Flags: wire.FlagExpectsResponse | wire.FlagParams, ID: 2, Verb: 1, Params: params}, make([]byte, 9000)),
		oneWay(3, make([]byte, 20<<10)),
		message(wire.Header{Flags: wire.FlagCancel, ID: 77}, nil),
		message(wire.Header{Flags: wire.FlagExpectsResponse | wire.FlagParams, ID: 4, Verb: 1, Params: params}, make([]byte, 3)),
	))
	r.write(batchFrame(message(wire.Header{Flags: wire.FlagExpectsResponse, ID: 5, Verb: 1}, make([]byte, 251<<10))))
	answers := r.responses(4)
	assert.Equal(t, map[uint64]string{
		2: wire.FailureOverloaded.String(),
		3: wire.FailureOverloaded.String(),
		4: wire.FailureOverloaded.String(),
		5: wire.FailureTooLarge.String(),
	}, answers)
	assert.EqualValues(t, 3, r.in.dropped[ReasonOverloaded].Load())
	assert.EqualValues(t, 1, r.in.dropped[ReasonTooLarge].Load())
	assert.EqualValues(t, 2, r.in.received.Load(), "the message that fills the node and the cancel")
	assert.Equal(t, int64(256<<10)+workCost, r.used(), "the rejected frames hold no capacity")
}

// TestReaderRejectedFrameIsCheckedWhole: a rejected batch frame read a
// piece at a time is acted on only once all of it has come and its
// checksum matched, as a frame read whole is: a damaged frame is a
// checksum mismatch, even when its damage also made a message bad, and a
// frame with a bad message is malformed; neither has any of its
// messages answered.
func TestReaderRejectedFrameIsCheckedWhole(t *testing.T) {
	response := message(wire.Header{Flags: wire.FlagResponse, ID: 9, Verb: 1}, nil)
	damaged := func(f []byte) []byte {
		f[len(f)-1] ^= 1
		return f
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"damaged", damaged(batchFrame(oneWay(2, make([]byte, 20<<10)), oneWay(3, make([]byte, 20<<10)))), wire.ErrChecksum},
		{"damaged and malformed", damaged(batchFrame(oneWay(2, make([]byte, 20<<10)), response, oneWay(3, make([]byte, 20<<10)))), wire.ErrChecksum},
		{"malformed", batchFrame(oneWay(2, make([]byte, 20<<10)), response, oneWay(3, make([]byte, 20<<10))), wire.ErrMalformed},
		{"overrun", batchFrame(oneWay(2, make([]byte, 20<<10)), oneWay(3, make([]byte, 20<<10))[:100]), wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, release := fullRejectingRig(t)
			defer release()
			r.write(tc.frame)
			require.ErrorIs(t, r.end(), tc.want)
			assert.Zero(t, r.in.dropped[ReasonOverloaded].Load(), "a message of a bad frame answered")
		})
	}
}

// TestReaderRejectedCompressedFrameIsAnswered: a compressed batch frame
// that finds no room under OverloadReject has its messages answered,
// and holds no capacity once they are.
func TestReaderRejectedCompressedFrameIsAnswered(t *testing.T) {
	r, release := fullRejectingRig(t)
	defer release()
	r.write(batchS2Frame(
		message(wire.Header{Flags: wire.FlagExpectsResponse, ID: 2, Verb: 1}, make([]byte, 20<<10)),
		oneWay(3, make([]byte, 20<<10)),
	))
	assert.Equal(t, map[uint64]string{
		2: wire.FailureOverloaded.String(),
		3: wire.FailureOverloaded.String(),
	}, r.responses(2))
	assert.EqualValues(t, 2, r.in.dropped[ReasonOverloaded].Load())
	eventually(t, func() bool { return r.used() == int64(256<<10)+workCost }, "the compressed block given back")
}
