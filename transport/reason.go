package transport

import (
	"context"
	"errors"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// Reason says why a message did not reach its handler. Every message that is
// not delivered is counted under exactly one reason, on the side that gave
// up on it (see ConnStats.Dropped).
type Reason uint8

const (
	ReasonOverloaded      Reason = iota // no capacity
	ReasonExpired                       // deadline passed before it was written or handled
	ReasonTooLarge                      // above MaxMessageSize
	ReasonConnectionReset               // the connection broke while it was being written
	ReasonPeerLeft                      // the peer left the membership
	ReasonClosed                        // the transport closed first
	ReasonRefused                       // the peer refused the handshake
	ReasonUnknownPeer                   // no address for the peer
	ReasonUnknownVerb                   // the receiver has no handler for it
	ReasonHandlerError                  // the handler returned an error (or panicked)
	ReasonCanceled                      // the sender's context was cancelled
	NumReasons            = iota
)

var reasonNames = [NumReasons]string{
	"overloaded", "expired", "too_large", "connection_reset", "peer_left",
	"closed", "refused", "unknown_peer", "unknown_verb", "handler_error", "canceled",
}

// String returns the reason's metric label, e.g. "expired".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// DroppedMessage describes a message that was queued and then not sent;
// see Config.OnDropped.
type DroppedMessage struct {
	Peer     cluster.NodeID
	Lane     routing.Lane
	Verb     Verb
	ID       uint64
	Response bool // the message was a response to the peer's request
	Reason   Reason
	Payload  []byte // valid only during the call
}

// ReasonOf classifies an error returned by Send, Request, OpenStream or
// SendFile: the Reason the transport counts for it, and false when err is
// not one of the transport's failures.
func ReasonOf(err error) (Reason, bool) {
	if errors.Is(err, ErrConnectionReset) {
		return ReasonConnectionReset, true
	}
	r := reasonOf(err)
	return r, r != ReasonConnectionReset
}

// reasonOf classifies an error that failed a message; anything it does not
// know (a write error from the socket, say) counts as a connection reset.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrOverloaded):
		return ReasonOverloaded
	case errors.Is(err, ErrExpired), errors.Is(err, context.DeadlineExceeded):
		return ReasonExpired
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, ErrPeerLeft):
		return ReasonPeerLeft
	case errors.Is(err, ErrClosed):
		return ReasonClosed
	case errors.Is(err, ErrRefused):
		return ReasonRefused
	case errors.Is(err, ErrUnknownPeer):
		return ReasonUnknownPeer
	case errors.Is(err, ErrUnknownVerb):
		return ReasonUnknownVerb
	case errors.Is(err, ErrHandler):
		return ReasonHandlerError
	}
	return ReasonConnectionReset
}
