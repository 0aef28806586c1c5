package transport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/transport"
)

// TestTheLargestTracedMessageGetsThroughWhileAStreamIsOpen: a stream
// connection is accepted only while it leaves the largest message's
// room (holdStreamConn), and that room must count the parameter block a
// large message holds with its payload (its trace context): here the
// session leaves exactly 1 MiB, the room of a message of MaxMessageSize
// without parameters. A traced message of that size needs 1 MiB and its
// trace context, which can never fit while the session is open, so it
// waits first in line at its peer's account, and every later large
// message of that peer behind it, for as long as the stream stays open.
func TestTheLargestTracedMessageGetsThroughWhileAStreamIsOpen(t *testing.T) {
	const (
		verbBig    transport.Verb = 123
		verbAfter  transport.Verb = 124
		verbStream transport.Verb = 125
		maxMessage                = 1 << 20
	)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = maxMessage
		// The session's default 4 MiB buffer and the largest message's 1 MiB.
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 5 << 20, Node: 64 << 20}
	})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	got := make(chan int, 2)
	deliver := transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		got <- len(m.Payload)
		return nil, nil
	})
	receiver.Handle(verbBig, deliver)
	receiver.Handle(verbAfter, deliver)
	streamDone := make(chan struct{})
	receiver.HandleStream(verbStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		defer close(streamDone)
		_, _ = io.Copy(io.Discard, s) // until the sender closes it
	}))
	s, err := sender.OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream)
	require.NoError(t, err, "a session that leaves the largest message's room")
	defer func() {
		require.NoError(t, s.Close())
		<-streamDone
	}()
	_, err = s.Write([]byte("hello"))
	require.NoError(t, err)

	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	require.NoError(t, sender.Send(ctx, c.ID(1), verbBig, make([]byte, maxMessage)))
	require.NoError(t, sender.Send(context.Background(), c.ID(1), verbAfter, make([]byte, 100<<10)))
	var sizes []int
	for range 2 {
		select {
		case n := <-got:
			sizes = append(sizes, n)
		case <-time.After(10 * time.Second):
			st := receiver.Stats()
			t.Fatalf("delivered %v; the receiver waits for room: %d waiters, %d bytes held of its peer's %d",
				sizes, st.InboundWaiters, st.InboundHeld, 5<<20)
		}
	}
	require.ElementsMatch(t, []int{maxMessage, 100 << 10}, sizes)
}
