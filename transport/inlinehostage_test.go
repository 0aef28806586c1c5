package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestAResponseDoesNotWaitForAnInlineHandlerOfAnotherVerb: the reader
// takes the writer's role of a connection's responses while it runs an
// Inline verb's requests, to write their answers together after them;
// the answer of a request to a Concurrent verb whose handler returned
// meanwhile, on the same connection, found the role taken and waited in
// the queue until the Inline handler had returned — a response held up
// by a handler of another verb, for as long as that one ran. It goes out
// as its handler returns.
func TestAResponseDoesNotWaitForAnInlineHandlerOfAnotherVerb(t *testing.T) {
	const (
		verbStaged transport.Verb = 320
		verbInline transport.Verb = 321
		verbWarm   transport.Verb = 322
	)
	c := newCluster(t, 2, nil)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	stagedRuns, inlineRuns, stagedAnswered := make(chan struct{}), make(chan struct{}), make(chan struct{})
	n2.Handle(verbWarm, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil }))
	n2.Handle(verbStaged, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		close(stagedRuns)
		<-inlineRuns // answers while the Inline handler runs
		return []byte("staged"), nil
	}))
	n2.Handle(verbInline, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		close(inlineRuns)
		select { // until the requester has the other answer, or gives up
		case <-stagedAnswered:
		case <-ctx.Done():
		}
		return []byte("inline"), nil
	}), transport.Inline())
	_, err := n1.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbWarm, nil) // the small lane's connection
	require.NoError(t, err)

	staged := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbStaged, nil)
		close(stagedAnswered)
		staged <- err
	}()
	<-stagedRuns
	inline := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 20*time.Second), c.ID(1), verbInline, nil)
		inline <- err
	}()
	<-inlineRuns
	require.NoError(t, within(t, staged, 5*time.Second, "the staged answer, while the Inline handler waits for it"))
	require.NoError(t, within(t, inline, 5*time.Second, "the inline answer"))
}
