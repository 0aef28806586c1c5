package transport

import (
	"context"
	"errors"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Reason says why a message did not reach its handler. Every message that is
// not delivered is counted under exactly one reason on each side that saw it
// (see ConnStats.Dropped and ConnStats.DroppedInbound).
type Reason uint8

const (
	ReasonOverloaded      Reason = iota // no capacity
	ReasonExpired                       // deadline passed before it was written or handled
	ReasonTooLarge                      // above MaxMessageSize
	ReasonConnectionReset               // the connection broke (or was judged dead) while it was being written; inbound, a request's before its handler started
	ReasonPeerLeft                      // the peer left the membership
	ReasonClosed                        // the transport closed first
	ReasonRefused                       // the peer refused the handshake
	ReasonUnknownPeer                   // no address for a peer that is not a member (a request's cancel sent after its Leave); a Send or Request to one returns ErrUnknownPeer, counted nowhere
	ReasonUnknownVerb                   // the receiver has no handler for it
	ReasonHandlerError                  // the handler returned an error (or panicked, or ended its goroutine)
	ReasonCanceled                      // the sender's context was cancelled
	NumReasons                          // the number of reasons
)

// reasons is the one table that ties a Reason to its metric label, the
// sentinel error errors.Is matches and the code a peer is told (FrameRefuse,
// FrameLargeCancel, failure responses). FailureUnknown: never sent.
var reasons = [NumReasons]struct {
	label string
	err   error
	code  wire.FailureCode
}{
	ReasonOverloaded:      {"overloaded", ErrOverloaded, wire.FailureOverloaded},
	ReasonExpired:         {"expired", ErrExpired, wire.FailureExpired},
	ReasonTooLarge:        {"too_large", ErrTooLarge, wire.FailureTooLarge},
	ReasonConnectionReset: {"connection_reset", ErrConnectionReset, wire.FailureUnknown},
	ReasonPeerLeft:        {"peer_left", ErrPeerLeft, wire.FailureUnknown},
	ReasonClosed:          {"closed", ErrClosed, wire.FailureUnknown},
	ReasonRefused:         {"refused", ErrRefused, wire.FailureUnknown},
	ReasonUnknownPeer:     {"unknown_peer", ErrUnknownPeer, wire.FailureUnknown},
	ReasonUnknownVerb:     {"unknown_verb", ErrUnknownVerb, wire.FailureUnknownVerb},
	ReasonHandlerError:    {"handler_error", ErrHandler, wire.FailureHandlerError},
	ReasonCanceled:        {"canceled", context.Canceled, wire.FailureCanceled},
}

// String returns the reason's metric label, e.g. "expired".
func (r Reason) String() string {
	if r < NumReasons {
		return reasons[r].label
	}
	return "unknown"
}

// Err returns the sentinel error of the reason (context.Canceled for
// ReasonCanceled).
func (r Reason) Err() error {
	if r < NumReasons {
		return reasons[r].err
	}
	return ErrConnectionReset
}

// DroppedMessage describes a message that was queued and then not sent;
// see Config.OnDropped.
type DroppedMessage struct {
	Peer     cluster.NodeID
	Lane     routing.Lane
	Verb     Verb
	ID       uint64
	Response bool // the message was a response to the peer's request
	// Request: the message was this node's request, whose caller's
	// Request returned the failure too; a hint store keeps only what no
	// caller was told of (neither Request nor Response).
	Request bool
	Reason  Reason
	Payload []byte // valid only during the call
}

// ReasonOf classifies an error returned by Send, Request, OpenStream or
// SendFile: the Reason the transport counts for it, and false when err is
// not one of the transport's failures. The transport's own errors come
// before the context's: a request failed as reset by a dial that timed
// out wraps net's timeout, which errors.Is matches against
// context.DeadlineExceeded, and is counted as reset, not expired.
func ReasonOf(err error) (Reason, bool) {
	if err == nil {
		return 0, false
	}
	for r := range NumReasons {
		if r != ReasonCanceled && errors.Is(err, reasons[r].err) {
			return r, true
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonExpired, true
	case errors.Is(err, context.Canceled):
		return ReasonCanceled, true
	}
	return ReasonConnectionReset, false
}

// reasonOf classifies an error that failed a message; anything it does not
// know (a write error from the socket, say) counts as a connection reset.
func reasonOf(err error) Reason {
	r, _ := ReasonOf(err)
	return r
}

// reasonOfCode is the reason a peer's failure code stands for.
func reasonOfCode(code wire.FailureCode) (Reason, bool) {
	if code == wire.FailureUnknown {
		return 0, false
	}
	for r := range NumReasons {
		if reasons[r].code == code {
			return r, true
		}
	}
	return 0, false
}

// failureCode is the code a peer is told for err: the code of its reason,
// or FailureHandlerError for an application error.
func failureCode(err error) wire.FailureCode {
	if r, ok := ReasonOf(err); ok && reasons[r].code != wire.FailureUnknown {
		return reasons[r].code
	}
	return wire.FailureHandlerError
}
