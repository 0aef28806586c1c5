package transport

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Sentinel errors. Test for them with errors.Is: the errors returned by
// Send, Request and the other calls wrap them, usually in an *OpError.
var (
	// ErrClosed is returned by calls on a transport that is shutting down or
	// closed, and fails messages still queued when it closed. It satisfies
	// errors.Is(err, net.ErrClosed).
	ErrClosed = fmt.Errorf("transport: closed: %w", net.ErrClosed)
	// ErrOverloaded: no capacity for the message, on this node (Send,
	// Request) or on the receiver (Request's failure response, or its
	// refusal of the connection a request waited for: no room for it,
	// or the receiver is shutting down).
	ErrOverloaded = errors.New("transport: overloaded")
	// ErrExpired: the message's deadline passed before it was written or
	// handled.
	ErrExpired = errors.New("transport: message expired")
	// ErrTooLarge: the message exceeds Config.Memory.MaxMessageSize.
	ErrTooLarge = errors.New("transport: message too large")
	// ErrUnknownVerb: the receiver has no handler for the request's verb.
	ErrUnknownVerb = errors.New("transport: unknown verb")
	// ErrHandler: the receiver's handler returned an error; the *RemoteError
	// in the chain carries its message.
	ErrHandler = errors.New("transport: handler failed")
	// ErrUnknownPeer: the membership has no address for the peer.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrPeerLeft: the peer left the membership while the message waited,
	// or while a file transfer or a stream to it was under way. A lane
	// whose dial finds the membership no longer has the peer, its Leave
	// not yet told, fails what it queued with it too. A request failed
	// with it may still have been written, and run by the peer.
	ErrPeerLeft = errors.New("transport: peer left")
	// ErrConnectionReset: the connection broke while the message was being
	// written, or, for a request, before its response came back; the peer
	// may or may not have received it. A request whose peer could not be
	// dialled fails with it too, at the first failed dial after it was
	// queued, wrapping the dial's error: that one was never written. A
	// dial refused for good fails it with ErrRefused instead, or with
	// ErrPeerLeft when the membership no longer has the peer; one refused
	// for want of room, or by a peer shutting down, with ErrOverloaded.
	ErrConnectionReset = errors.New("transport: connection reset")
	// ErrRefused: the peer refused the handshake (see the wrapped
	// *HandshakeError for why). A call to this node's own ID fails with it
	// at once: the transport carries messages between nodes, not to the
	// node that sends them.
	ErrRefused = errors.New("transport: handshake refused")
)

// errOwnID fails a call to this node's own ID, before any dial.
var errOwnID = fmt.Errorf("%w: the peer is this node's own ID", ErrRefused)

// errRequestExpired fails a request whose deadline passed before it was
// written: its expiry is its context's deadline.
var errRequestExpired = fmt.Errorf("%w: %w", ErrExpired, context.DeadlineExceeded)

// OpError describes a failed call or message: what was attempted, with which
// peer, on which lane, and why.
type OpError struct {
	Op   string // "send", "request", "dial", "handshake", "write"
	Peer cluster.NodeID
	// Lane is the message lane, or for OpenStream and SendFile the kind of
	// connection they use, numbered after the lanes as in the handshake:
	// routing.NumLanes (the stream session) and routing.NumLanes+1 (a
	// file transfer). Error names it.
	Lane routing.Lane
	Verb string // a request's verb: its name (Named, NameVerb) or number
	Err  error
}

func (e *OpError) Error() string {
	if e.Verb != "" {
		return fmt.Sprintf("transport: %s %s to %s (%s): %v", e.Op, e.Verb, e.Peer, kindName(e.Lane), e.Err)
	}
	return fmt.Sprintf("transport: %s to %s (%s): %v", e.Op, e.Peer, kindName(e.Lane), e.Err)
}

// kindName names a connection kind: "small lane", "stream session",
// "file transfer", "stream connection".
func kindName(kind routing.Lane) string {
	switch kind {
	case laneStreams:
		return "stream session"
	case laneFile:
		return "file transfer"
	case laneOwnStream:
		return "stream connection"
	}
	return kind.String() + " lane"
}

func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout, so that *OpError satisfies
// net.Error for callers that test for it that way.
func (e *OpError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// Temporary is part of net.Error; it reports the same as Timeout.
func (e *OpError) Temporary() bool { return e.Timeout() }

var _ net.Error = (*OpError)(nil)

// RemoteError is a failure reported by the peer: the answer to a request,
// or its refusal of a large message. errors.Is matches it against
// ErrUnknownVerb, ErrHandler, ErrExpired, ErrOverloaded, ErrTooLarge or
// context.Canceled according to its code.
type RemoteError struct {
	Code    wire.FailureCode
	Message string
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return "remote: " + e.Code.String()
	}
	return "remote: " + e.Code.String() + ": " + e.Message
}

// Is maps failure codes onto the package's sentinels (see Reason, and
// ErrCorrupt and ErrIncomplete for a file transfer's).
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case wire.FailureCorrupt:
		return target == ErrCorrupt
	case wire.FailureIncomplete:
		return target == ErrIncomplete
	}
	r, ok := reasonOfCode(e.Code)
	return ok && target == reasons[r].err
}

// HandshakeError is a refused handshake, from either side.
type HandshakeError struct {
	Reason  wire.RefuseReason
	Message string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("handshake refused: %s: %s", e.Reason, e.Message)
}

// Is makes a HandshakeError match ErrRefused, except a wire.Busy one: a
// peer with no room for the connection now, or shutting down, refuses it
// for the moment, and the call that met it fails ErrOverloaded.
func (e *HandshakeError) Is(target error) bool { return target == ErrRefused && e.Reason != wire.Busy }
