package transport

import (
	"sync"

	"github.com/internode/internode/wire"
)

// maxLargeRefusals is how many of a peer's refused large messages a node
// remembers. A sender has at most maxBegunLarge messages begun on a
// connection, so the refusals it had not read when the connection ended
// are among the last few written.
const maxLargeRefusals = maxInboundStreams

// largeRefusals remembers the large messages of one peer's that this node
// refused, and why. A refusal written just before its connection ended
// may never have been read, and its sender, which wrote none of the
// message's payload, then begins the message again, its header unchanged
// but for its TTL, on its next connection: the refusal stands, and the
// message is refused again as it was, not counted a second time (it was
// counted as its refusal was written) nor delivered after being counted
// dropped. A message is known by its ID, verb, creation time and length:
// the wire lets a sender reuse a one-way message's ID.
type largeRefusals struct {
	mu   sync.Mutex
	last []largeRefusal // a ring of the latest, next the oldest once full
	next int
}

type largeRefusal struct {
	message refusedMessage
	failure wire.Failure
}

// refusedMessage is what tells a message begun again from another.
type refusedMessage struct {
	id, createdAt int64
	verb, length  uint32
}

func refusedMessageOf(h *wire.Header) refusedMessage {
	return refusedMessage{id: int64(h.ID), createdAt: h.CreatedAt, verb: h.Verb, length: h.PayloadLength}
}

// add remembers that the message of header h was refused with failure.
func (r *largeRefusals) add(h *wire.Header, failure wire.Failure) {
	f := largeRefusal{refusedMessageOf(h), failure}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.last) < maxLargeRefusals {
		r.last = append(r.last, f)
		return
	}
	r.last[r.next] = f
	r.next = (r.next + 1) % maxLargeRefusals
}

// of returns the failure the message of header h was refused with, if it
// was lately.
func (r *largeRefusals) of(h *wire.Header) (wire.Failure, bool) {
	m := refusedMessageOf(h)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.last {
		if f.message == m {
			return f.failure, true
		}
	}
	return wire.Failure{}, false
}
