package transport

import (
	"context"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// Verb says what a message means: mutation, read, gossip... The application
// picks the numbers; both ends must agree on them.
type Verb uint32

// Message is a received message, as a Handler sees it.
//
// A Message and its Payload are valid only until the handler returns: the
// transport reuses both. A handler that keeps the payload must copy it.
type Message struct {
	From cluster.NodeID
	Verb Verb
	ID   uint64       // unique per sender
	Lane routing.Lane // the lane it arrived on
	// Conn identifies the connection it arrived on. On the urgent and
	// small lanes the messages of one Conn that run in order (an Ordered
	// verb's, and by default one-way messages) reach their verb's handler
	// in the order they were sent. On the large lane several messages are
	// in flight at once, interleaved, and each is handled when its last
	// byte arrives, so a small large message can overtake a huge one.
	// Across connections (after a reconnect), across verbs, and for
	// messages that run in a stage (Concurrent; requests by default)
	// there is no order.
	Conn uint64
	// CreatedAt is when the sender created the message, on the sender's
	// clock: for tracing and latency figures; it may be off by however
	// much the two clocks disagree.
	CreatedAt time.Time
	// ExpiresAt is when the message stops being worth handling, on this
	// node's clock: its arrival plus the time its sender had left when it
	// wrote it. The deadline travels as a duration, so the two clocks
	// need not agree; it ends late by the message's time on the wire and
	// in its sender's socket send queue (at most
	// SocketConfig.NotSentLowat bytes unsent). Its time in this node's
	// receive queue counts against it when it waited there while the
	// connection's reader paused for inbound capacity or was held up by
	// a handler (an Inline one, or on the large lane a ReaderHandler
	// reading a part): the reader samples the queue every 5 ms
	// meanwhile; such waits are what fill those queues. Both ends keep
	// it on their monotonic clock, so a step of either's wall clock (an
	// NTP step, a VM resumed) does not move it; its wall reading is the
	// wall clock's when the handler started, plus what was left. The
	// handler's context has the same deadline. Zero: never.
	ExpiresAt time.Time
	Payload   []byte
	// IsRequest reports whether the sender waits for a response: the
	// handler's return values are sent back.
	IsRequest bool
}

// Handler processes the messages of one verb.
//
// ServeMessage is called for each message of its verb, as Handle's options
// say: in a stage of concurrent calls (Concurrent; by default a verb's
// requests), or one at a time per connection in the order the messages
// were sent (Ordered; by default a verb's one-way messages; on the large
// lane, the order their last bytes arrived: see Ordered), so that an
// ordered handler that blocks holds up that verb from that sender on that
// lane only. The context's deadline is the message's ExpiresAt; the
// context is cancelled then, when the requester cancels its Request (its
// cancel travels on the urgent lane; the answer is then not sent), when a
// request's connection ends (its answer has nowhere to go), or when the
// transport closes. For a request, the returned
// bytes are the response and an error is sent to the requester as a failure
// (ErrHandler, with the error's message) — except an error that
// ReasonOf names overloaded, too large or expired (one wrapping
// ErrOverloaded, ErrTooLarge, ErrExpired, or context.DeadlineExceeded
// and none of the transport's other errors), which the requester gets
// as the transport's own (ErrOverloaded, ErrTooLarge, ErrExpired), so
// that a handler can shed load as the transport does. Anything else is
// ErrHandler, a wrapped context.Canceled or ErrUnknownVerb included: the
// requester's cancel and a verb this node lacks are the transport's to
// report. For a one-way message both are discarded. The returned
// slice may be retained by the transport until it is written. A handler
// that panics, or ends its goroutine with runtime.Goexit (a test's
// t.FailNow or require failing in it), fails as if it had returned an
// error; the verb and the connection go on serving. The same holds for
// ReaderHandler, StreamHandler (its stream is cut short) and FileHandler.
type Handler interface {
	ServeMessage(ctx context.Context, m *Message) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) ([]byte, error)

// ServeMessage calls f(ctx, m).
func (f HandlerFunc) ServeMessage(ctx context.Context, m *Message) ([]byte, error) { return f(ctx, m) }
