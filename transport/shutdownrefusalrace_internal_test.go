package transport

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestLargeRequestRefusedAtShutdownAsItBegins: Shutdown refuses the large
// requests not yet granted (refuseWaiting) in the moment between one's
// entry in its connection's streams and its taking room. The begin then
// took the room all the same and wrote a grant after the refusal, the
// room never given back; or, out of room under OverloadReject, wrote a
// second refusal, counted again. Its caller must read the one refusal,
// and the room must be free.
func TestLargeRequestRefusedAtShutdownAsItBegins(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy OverloadPolicy
		size   int
	}{
		{"fits", OverloadPause, 200 << 10},
		{"fits-reject", OverloadReject, 200 << 10},
		{"out-of-room-reject", OverloadReject, 900 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReaderRig(t, routing.Large, func(c *Config) {
				c.Memory.InboundOverload = tc.policy
				c.Memory.MaxMessageSize = 1 << 20
				c.Memory.Inbound = Limits{PerConnection: 512 << 10, PerPeer: 1 << 20, Node: 1 << 20}
			})
			r.tr.Handle(1, newRecorder(false))
			largeBeginRecorded = func() {
				r.tr.closing.Store(true)
				r.ic.refuseWaiting()
			}
			t.Cleanup(func() { largeBeginRecorded = nil })
			r.write(largeBegin(2, wire.Header{ID: 2, Verb: 1, Flags: wire.FlagExpectsResponse}, tc.size))

			refusal := within(t, r.back, 5*time.Second, "the refusal")
			require.Equal(t, wire.FrameRefuse, refusal.kind)
			f, err := wire.DecodeFailure(refusal.payload)
			require.NoError(t, err)
			assert.Contains(t, f.Message, "shutting down")
			// A one-way message after it (Shutdown refuses requests only):
			// its grant is the next answer, none other for the request.
			r.write(largeBegin(4, wire.Header{Verb: 1}, 1<<10))
			next := within(t, r.back, 5*time.Second, "the next answer")
			assert.Equal(t, frame{wire.FrameGrant, 4, []byte{}}, next, "a second answer for the refused request")
			r.write(anyFrame(wire.FrameLargeMore, 4, make([]byte, 1<<10)))
			eventually(t, func() bool { return r.used() == 0 }, "no room held for the refused request")
			assert.EqualValues(t, 1, r.in.dropped[ReasonClosed].Load())
			assert.Zero(t, r.in.dropped[ReasonOverloaded].Load())
		})
	}
}
