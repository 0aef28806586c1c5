package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/internode/internode/cluster"
)

// Entry is what a node knows of one node's liveness: a version, compared
// first by Generation, then by Heartbeat.
type Entry struct {
	// Generation identifies one run of the node: it changes, upwards, every
	// time the node starts (its start time in nanoseconds is a good choice).
	Generation uint64
	// Heartbeat counts the node's gossip rounds within its generation.
	Heartbeat uint64
}

// Newer reports whether e is a later version than other.
func (e Entry) Newer(other Entry) bool {
	if e.Generation != other.Generation {
		return e.Generation > other.Generation
	}
	return e.Heartbeat > other.Heartbeat
}

// State is one node's table of heartbeats. It is pure: the caller passes
// the time. It is not safe for concurrent use (Gossiper guards it).
type State struct {
	self    cluster.NodeID
	entries map[cluster.NodeID]Entry
	// changed is when each entry last moved forward, on the local clock:
	// a node is suspect when its entry stops changing.
	changed map[cluster.NodeID]time.Time
	// forgotten holds, for each node dropped by Forget, its last entry and
	// when it was dropped or last heard of in a digest: Merge refuses that
	// entry and older ones, which the nodes that have not dropped it yet
	// still gossip.
	forgotten map[cluster.NodeID]forgottenEntry
	// digestAfter is the last node ID of the previous partial digest: the
	// next one goes on from the ID after it (see Digest).
	digestAfter cluster.NodeID
}

type forgottenEntry struct {
	last Entry
	at   time.Time
}

// NewState returns the table of node self, starting a new generation.
func NewState(self cluster.NodeID, generation uint64, now time.Time) *State {
	return &State{
		self:    self,
		entries: map[cluster.NodeID]Entry{self: {Generation: generation}},
		changed: map[cluster.NodeID]time.Time{self: now},

		forgotten: map[cluster.NodeID]forgottenEntry{},
	}
}

// Beat increments this node's own heartbeat; call it once per round.
func (s *State) Beat(now time.Time) {
	e := s.entries[s.self]
	e.Heartbeat++
	s.entries[s.self] = e
	s.changed[s.self] = now
}

// Merge takes every entry of a received digest that is newer than the one
// known, and returns how many it took. Only this node moves its own entry:
// an entry for it that is newer than its own is from a previous run of the
// same ID (whose clock was ahead, say), which the others would keep taking
// over this run's; so this node starts a generation above it instead. The
// entry of a node forgotten (see Forget) is ignored if it is its last one
// known or an older one of the same generation: a newer entry, or one of
// another generation, is a restart or a return.
func (s *State) Merge(digest map[cluster.NodeID]Entry, now time.Time) (updated int) {
	for id, e := range digest {
		if id == s.self {
			if e.Newer(s.entries[s.self]) && e.Generation < math.MaxUint64 {
				s.entries[s.self] = Entry{Generation: e.Generation + 1}
				s.changed[s.self] = now
				updated++
			}
			continue
		}
		if f, ok := s.forgotten[id]; ok {
			// A smaller generation is not old news: the departed run's
			// own entries superseded its predecessors' long ago. It is a
			// restart whose clock is behind.
			if !e.Newer(f.last) && e.Generation == f.last.Generation {
				if e == f.last {
					// A peer still holds the departed node's last entry:
					// refuse it for after again, or it comes back from
					// that peer once this node's memory of it expires.
					s.forgotten[id] = forgottenEntry{last: f.last, at: now}
				}
				continue // old news of a departed node
			}
			delete(s.forgotten, id) // it restarted or came back
		}
		if known, ok := s.entries[id]; ok && !e.Newer(known) {
			continue
		}
		s.entries[id] = e
		s.changed[id] = now
		updated++
	}
	return updated
}

// Entries returns a copy of the table.
func (s *State) Entries() map[cluster.NodeID]Entry {
	out := make(map[cluster.NodeID]Entry, len(s.entries))
	for id, e := range s.entries {
		out[id] = e
	}
	return out
}

// Digest returns the entries to gossip this round, at most limit (which
// must be at least 1): the whole table if it fits, else this node's own
// entry and the next limit-1 others in ID order, going on each call from
// where the previous one stopped and wrapping around, so that a table
// larger than a digest goes out whole every few rounds.
func (s *State) Digest(limit int) map[cluster.NodeID]Entry {
	if len(s.entries) <= limit {
		return s.Entries()
	}
	others := make([]cluster.NodeID, 0, len(s.entries)-1)
	for id := range s.entries {
		if id != s.self {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	start, found := slices.BinarySearch(others, s.digestAfter)
	if found {
		start++
	}
	out := make(map[cluster.NodeID]Entry, limit)
	out[s.self] = s.entries[s.self]
	for i := range limit - 1 {
		id := others[(start+i)%len(others)]
		out[id] = s.entries[id]
		s.digestAfter = id
	}
	return out
}

// Stale returns, sorted, the nodes whose entry has not changed for longer
// than after: the ones a failure detector would suspect.
func (s *State) Stale(now time.Time, after time.Duration) []cluster.NodeID {
	var stale []cluster.NodeID
	for id, at := range s.changed {
		if id != s.self && now.Sub(at) > after {
			stale = append(stale, id)
		}
	}
	slices.Sort(stale)
	return stale
}

// Forget drops the nodes whose entry has not changed for longer than after
// and returns them, sorted: they departed (left, or died long ago), and a
// table that kept them would grow for ever as nodes come and go. This node
// is never forgotten. Other nodes drop the same entry at about the same
// time, but until they do their digests still carry it: so each forgotten
// node's last entry is remembered until no digest has carried it for after,
// during which Merge takes only a newer one or one of another generation
// (the node restarted or came back), then dropped too.
func (s *State) Forget(now time.Time, after time.Duration) []cluster.NodeID {
	for id, f := range s.forgotten {
		if now.Sub(f.at) > after {
			delete(s.forgotten, id)
		}
	}
	gone := s.Stale(now, after)
	for _, id := range gone {
		s.forgotten[id] = forgottenEntry{last: s.entries[id], at: now}
		delete(s.entries, id)
		delete(s.changed, id)
	}
	return gone
}

// PickPeers returns up to n distinct peers drawn at random from candidates,
// leaving out self. candidates is not modified.
func PickPeers(r *rand.Rand, candidates []cluster.NodeID, self cluster.NodeID, n int) []cluster.NodeID {
	peers := make([]cluster.NodeID, 0, len(candidates))
	for _, id := range candidates {
		if id != self && !slices.Contains(peers, id) {
			peers = append(peers, id)
		}
	}
	// A partial Fisher-Yates shuffle: the first n are a uniform sample.
	n = min(n, len(peers))
	for i := range n {
		j := i + r.IntN(len(peers)-i)
		peers[i], peers[j] = peers[j], peers[i]
	}
	return peers[:n]
}

// The digest encoding, all integers unsigned varints:
//
//	version (1) | count | count × ( len(id) | id bytes | generation | heartbeat )
//
// Entries are written sorted by node ID so equal tables encode equally.
const (
	digestVersion = 1
	// MaxDigestEntries bounds the nodes in one digest, so that a malformed
	// or hostile digest cannot make the receiver allocate without limit.
	MaxDigestEntries = 4096
	maxIDLen         = 255
	// minEntryLen is the fewest bytes an entry takes: its ID's length,
	// one byte of ID, its generation and its heartbeat.
	minEntryLen = 4
)

// ErrMalformed is returned by DecodeDigest (and so by the Gossiper's
// handler) for bytes that are not a digest.
var ErrMalformed = errors.New("gossip: malformed digest")

// AppendDigest appends the encoding of entries to dst. DecodeDigest
// refuses more than MaxDigestEntries: take a larger table's entries a
// digest at a time with State.Digest.
func AppendDigest(dst []byte, entries map[cluster.NodeID]Entry) []byte {
	ids := make([]cluster.NodeID, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	dst = binary.AppendUvarint(dst, digestVersion)
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		e := entries[id]
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendUvarint(dst, e.Generation)
		dst = binary.AppendUvarint(dst, e.Heartbeat)
	}
	return dst
}

// DecodeDigest decodes a digest. It copies what it keeps: b may be reused
// once it returns (a handler's payload is).
func DecodeDigest(b []byte) (map[cluster.NodeID]Entry, error) {
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated", ErrMalformed)
		}
		b = b[n:]
		return v, nil
	}
	version, err := next()
	if err != nil {
		return nil, err
	}
	if version != digestVersion {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, version)
	}
	count, err := next()
	if err != nil {
		return nil, err
	}
	if count > MaxDigestEntries {
		return nil, fmt.Errorf("%w: %d entries, limit %d", ErrMalformed, count, MaxDigestEntries)
	}
	if count > uint64(len(b)/minEntryLen) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrMalformed, count, len(b))
	}
	entries := make(map[cluster.NodeID]Entry, count)
	for range count {
		idLen, err := next()
		if err != nil {
			return nil, err
		}
		if idLen == 0 || idLen > maxIDLen || idLen > uint64(len(b)) {
			return nil, fmt.Errorf("%w: bad node ID length %d", ErrMalformed, idLen)
		}
		id := cluster.NodeID(b[:idLen]) // the conversion copies
		b = b[idLen:]
		var e Entry
		if e.Generation, err = next(); err != nil {
			return nil, err
		}
		if e.Heartbeat, err = next(); err != nil {
			return nil, err
		}
		entries[id] = e
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return entries, nil
}
