package transport

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestReaderKilledAsAStreamedHandlerStarts: a connection killed (its
// peer left, or its back channel failed) in the moment between a
// streamed message's handler being started, at its first part, and the
// reader recording the handler's pipe was missed by kill, which ends the
// pipes it finds: the reader then handed the part to a handler that did
// not read yet, and stayed blocked. The connection never ended (end did
// not run: its partial messages kept their room, and its requests'
// handlers were not told), for as long as the handler did not read — for
// ever for one that waits on its context first. The reader now ends the
// pipe itself when it finds the connection killed as it records it.
func TestReaderKilledAsAStreamedHandlerStarts(t *testing.T) {
	// Put back after the rig's cleanup, which waits for the reader.
	t.Cleanup(func() { streamedStarting = nil })
	r := newReaderRig(t, routing.Large, nil)
	release := make(chan struct{})
	var releaseOnce sync.Once
	letRead := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letRead) // before the rig's cleanup, which waits for the reader
	readErr := make(chan error, 1)
	r.tr.HandleReader(1, ReaderHandlerFunc(func(ctx context.Context, _ *Message, body io.Reader) ([]byte, error) {
		select { // not reading yet
		case <-ctx.Done():
		case <-release:
		}
		_, err := io.Copy(io.Discard, body)
		readErr <- err
		return nil, err
	}))
	streamedStarting = func() { r.ic.kill() } // the peer is gone, as the handler starts

	r.write(largeBegin(1, wire.Header{ID: 1, Verb: 1}, 1<<20))
	within(t, r.back, 5*time.Second, "grant 1")
	r.write(anyFrame(wire.FrameLargeMore, 1, make([]byte, 100<<10)))

	err := within(t, r.ended, 5*time.Second, "the reader of a killed connection to end")
	r.ended <- err // for the rig's cleanup
	eventually(t, func() bool { return r.used() == 0 }, "the partial message's room given back")
	letRead()
	assert.ErrorIs(t, within(t, readErr, 5*time.Second, "the handler's read"), ErrConnectionReset)
	require.Zero(t, r.tr.inBudget.Waiting())
}
