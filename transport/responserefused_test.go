package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestAResponseRefusedAtItsQueueReachesOnDropped: a response whose
// connection ended while its handler ran was refused by the back channel's
// queue, counted as dropped and not handed to OnDropped, whose doc
// promises it every response that was not written; one refused a moment
// later, once queued, was handed to it.
func TestAResponseRefusedAtItsQueueReachesOnDropped(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	started, release := make(chan struct{}), make(chan struct{})
	r.tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) {
		close(started)
		<-release
		return []byte("the answer"), nil
	}))
	r.write(batchFrame(message(wire.Header{ID: 9, Verb: 1, Flags: wire.FlagExpectsResponse}, nil)))
	within(t, started, 5*time.Second, "the handler to start")
	require.NoError(t, r.far.Close())
	r.end()
	close(release)

	d := within(t, r.drops, 5*time.Second, "the response handed to OnDropped")
	assert.True(t, d.Response)
	assert.Equal(t, uint64(9), d.ID)
	assert.Equal(t, Verb(1), d.Verb)
	assert.Equal(t, ReasonConnectionReset, d.Reason)
	assert.Equal(t, []byte("the answer"), d.Payload)
	assert.EqualValues(t, 1, r.ic.peer.outbound[routing.Small].dropped[ReasonConnectionReset].Load(), "counted once")
}
