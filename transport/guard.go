package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// This file holds what keeps a node's resources bounded against peers that
// misbehave: caps on established connections, forgetting peers that are
// not members, classifying and rate-limiting reports of bad input.

// StrangersPeer is the Peer of the Stats entries, and the "peer" label of
// the metrics, that sum the traffic of peers that are not members
// (Config.Security.AcceptUnknownPeers): however many IDs such peers claim, they take
// one entry per lane and one metric series.
const StrangersPeer cluster.NodeID = "(not a member)"

// DepartedPeer is the Peer of the Stats entries, and the "peer" label of
// the metrics read from Stats, that sum the traffic of nodes that left
// the membership and did not come back, beyond the latest maxDepartedIDs
// (256) of them: a cluster whose nodes take a new ID at each start keeps
// one entry per lane for all of them, not one for each ID it ever saw. A
// node folded in there that joins again counts under its ID from zero.
// The coalescing histograms (internode.coalesce.batch_messages and
// .wait), recorded as each write happens, keep the series of every peer
// ID they saw for as long as the meter provider keeps them: the OTel Go
// SDK's cardinality limit (2000 series an instrument unless set
// otherwise) bounds those.
const DepartedPeer cluster.NodeID = "(departed)"

// strangerSweep is how often quiet non-members are forgotten.
const strangerSweep = 2 * time.Second

// claimConn admits one more established inbound connection of kind from
// peer id, within Config.Security.MaxConnsPerPeer and MaxConns, and returns the
// peer. releaseConn gives the claim back when the connection ends. The
// claim is made under peersMu, so a peer being forgotten (see
// forgetQuietStrangers) is never claimed.
func (t *Transport) claimConn(id cluster.NodeID, kind uint8) (*peer, error) {
	m, member := t.cfg.Membership.Lookup(id) // not under peersMu (newPeer)
	p, made, err := t.claimConnLocked(id, kind, member, m)
	if made {
		p.learnAddr()
	}
	return p, err
}

func (t *Transport) claimConnLocked(id cluster.NodeID, kind uint8, member bool, m cluster.Member) (p *peer, made bool, err error) {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if t.closing.Load() {
		return nil, false, ErrClosed
	}
	p = t.peers[id]
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	switch {
	case t.established >= t.cfg.Security.MaxConns:
		return nil, false, fmt.Errorf("this node has %d connections, its limit", t.established)
	case p != nil && p.inConns[kind] >= t.cfg.Security.MaxConnsPerPeer:
		return nil, false, fmt.Errorf("%q has %d connections of kind %d, the limit", id, p.inConns[kind], kind)
	case p == nil && !member && t.strangerEntries >= t.cfg.Security.MaxConns:
		// An entry outlives its connections until the janitor finds it
		// quiet: a peer hanging up under a new ID each time would
		// otherwise leave one for each, however few connections it held.
		t.sweepSoon()
		return nil, false, fmt.Errorf("this node has entries for %d nodes that are not members, its limit", t.strangerEntries)
	}
	if p == nil {
		p, made = newPeer(t, id, member, m, member), true
		t.addPeerLocked(p)
	}
	p.inConns[kind]++
	t.established++
	return p, made, nil
}

// addPeerLocked publishes new entry p; peersMu must be held for writing.
func (t *Transport) addPeerLocked(p *peer) {
	t.peers[p.id] = p
	if !p.member.Load() {
		t.strangerEntries++
	}
	t.publishPeers()
}

// sweepSoon asks the janitor to forget the quiet strangers now.
func (t *Transport) sweepSoon() {
	select {
	case t.sweepNow <- struct{}{}:
	default:
	}
}

// releaseConn gives back a claim of claimConn.
func (t *Transport) releaseConn(p *peer, kind uint8) {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	p.inConns[kind]--
	t.established--
}

// janitor forgets quiet strangers until the transport closes.
func (t *Transport) janitor() {
	tick := time.NewTicker(strangerSweep)
	defer tick.Stop()
	for {
		select {
		case <-t.closed:
			return
		case <-tick.C:
			t.forgetQuietStrangers()
		case <-t.sweepNow:
			t.forgetQuietStrangers()
		}
	}
}

// errForgotten stops a forgotten stranger's writers; nothing can be queued
// for it then (retireIfQuiet), so no message ever fails with it: a Send
// that meets it tries again on a new entry.
var errForgotten = fmt.Errorf("%w: forgotten", ErrUnknownPeer)

// forgetQuietStrangers drops the entries of peers that are not members and
// hold nothing, adding their counters to the strangers' totals, so that a
// flood of made-up node IDs leaves no goroutine, entry or metric series
// behind.
func (t *Transport) forgetQuietStrangers() {
	// An entry made for a stranger that has joined since is a member's
	// (a Send to it may be waiting for capacity, holding nothing yet). A
	// member's entry the membership no longer has is one whose Leave is
	// on its way (cluster/memberlist delivers events from its own
	// goroutine), or came between a Send's Lookup and the entry's making
	// and found nothing to delete; once quiet it departs, as a Leave
	// would, keeping its name and counts, since nothing else may. The
	// membership is asked without peersMu held.
	var left []*peer
	for _, p := range *t.peersView.Load() {
		switch member := t.isMember(p.id); {
		case member && !p.member.Load():
			t.promote(p)
		case !member && p.member.Load():
			left = append(left, p)
		}
	}
	var gone []*peer
	t.peersMu.Lock()
	for id, p := range t.peers {
		if p.member.Load() && !slices.Contains(left, p) || !p.retireIfQuiet(errForgotten) {
			continue
		}
		delete(t.peers, id)
		gone = append(gone, p)
		if p.member.Load() {
			t.addDeparted(p)
			continue
		}
		// Folded in the same step, so that Stats never misses them.
		t.strangers.add(p, false)
		t.strangerEntries--
	}
	if len(gone) > 0 {
		t.publishPeers()
	}
	t.pruneDeparted()
	t.peersMu.Unlock()
	for _, p := range gone {
		p.stop(errForgotten)
	}
}

// promote makes a stranger's entry a member's, for a node that joined.
// What it counted as a stranger stays with the strangers (Stats reports
// those under StrangersPeer, as monotonic counters): moved there in one
// step, under peersMu, which Stats reads under.
func (t *Transport) promote(p *peer) {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if p.member.Load() || t.peers[p.id] != p {
		return // a member's already, or forgotten, its counts folded in
	}
	t.claimLocked(p)
}

// claimLocked makes stranger entry p a member's: what it counted as a
// stranger's moves to the strangers' totals, where Stats showed it, and
// it counts for its ID from zero. peersMu must be held for writing.
func (t *Transport) claimLocked(p *peer) {
	t.strangers.add(p, true)
	p.member.Store(true)
	t.strangerEntries--
}

// BadInput says why an inbound connection was closed for what it sent.
type BadInput uint8

const (
	BadInputMalformed BadInput = iota // bytes that are not the wire format
	BadInputChecksum                  // a frame whose checksum does not match; under TLS, a record that fails its authentication
	BadInputTooLarge                  // a frame above the frame limit
	BadInputTruncated                 // a frame cut short by the connection's end
	BadInputSilent                    // nothing, or a frame trickled, for longer than Config.Timeouts.Keepalive
	numBadInputs
)

var badInputNames = [numBadInputs]string{"malformed", "checksum", "too_large", "truncated", "silent"}

// String returns the metric label of the kind of bad input.
func (b BadInput) String() string {
	if b < numBadInputs {
		return badInputNames[b]
	}
	return "unknown"
}

// badInputOf classifies the error that ended a connection for bad input.
func badInputOf(err error) BadInput {
	code, tlsAlert := localAlert(err)
	switch {
	case errors.Is(err, wire.ErrChecksum), tlsAlert && code == alertBadRecordMAC:
		return BadInputChecksum
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrMessageTooLarge):
		return BadInputTooLarge
	case errors.Is(err, wire.ErrMalformed):
		// Before ErrTruncated: bytes cut inside a frame that arrived whole
		// are wrapped in both (errCompressedBatch, forEachMessage), and
		// are not a frame cut short by the connection's end.
		return BadInputMalformed
	case errors.Is(err, wire.ErrTruncated):
		return BadInputTruncated
	case isTimeout(err):
		return BadInputSilent
	}
	return BadInputMalformed
}

// logKey names one kind of report that rateLog limits.
type logKey struct {
	refusal  Refusal  // +1; 0 when not a refusal
	badInput BadInput // +1; 0 when not bad input
	other    uint8
}

const (
	logBadBackChannel uint8 = iota + 1
	logTLSReload
	logNoStreamCapacity
	logDeafPeer
)

// rateLog logs warnings of each key at most burst times per interval and
// then says how many it left out, so that a hostile peer cannot flood the
// log. Safe for concurrent use.
type rateLog struct {
	log   *slog.Logger
	every time.Duration
	burst int

	mu      sync.Mutex
	windows map[logKey]*logWindow
}

type logWindow struct {
	start      time.Time
	logged     int
	suppressed int
}

// warn logs msg unless key has used its burst in this interval.
func (r *rateLog) warn(key logKey, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if r.windows == nil {
		r.windows = make(map[logKey]*logWindow)
	}
	w := r.windows[key]
	if w == nil {
		w = &logWindow{start: now}
		r.windows[key] = w
	}
	var left int
	if now.Sub(w.start) >= r.every {
		left = w.suppressed
		*w = logWindow{start: now}
	}
	w.logged++
	ok := w.logged <= r.burst
	if !ok {
		w.suppressed++
	}
	r.mu.Unlock()
	if left > 0 {
		r.log.Warn("internode: similar warnings left out", "count", left, "last", msg)
	}
	if ok {
		r.log.Warn(msg, args...)
	}
}
