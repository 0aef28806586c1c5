package cluster

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/internode/internode/wire"
)

// Static is a Membership whose members are set by hand. Add and Remove
// notify watchers synchronously, in call order, before they return. A
// watcher must therefore not call Add, Remove or any watcher's stop
// function: they wait for the running notification, which waits for it.
// Closing a transport stops its watcher, so a watcher must not close a
// transport that watches the same Static either.
//
// Static is safe for concurrent use.
type Static struct {
	mu       sync.Mutex // guards members and watchers
	members  map[NodeID]Member
	watchers map[int]func(Event)
	nextID   int
	// notifying is a one-slot semaphore held while a change is applied and
	// watchers are notified, so that they see changes in order and stop can
	// wait for a running callback. A channel rather than a mutex, so that
	// testing/synctest sees who waits for it.
	notifying chan struct{}
}

var _ Membership = (*Static)(nil)

// ErrInvalidMember is returned, wrapped with the entry at fault, by
// CheckMembers and Static.Add for a member no cluster can hold: one with
// an empty ID or one longer than wire.MaxNameLength (255 bytes, what a
// handshake carries), or one ID listed at two addresses.
var ErrInvalidMember = errors.New("cluster: invalid member")

// CheckMembers returns an error, matching ErrInvalidMember and naming the
// first entry at fault, if a member's ID is empty or longer than
// wire.MaxNameLength, or an ID is listed twice with different addresses;
// nil otherwise. The same member listed twice is allowed. Call it on a
// member list read from configuration before NewStatic, which panics on
// such a list.
func CheckMembers(members []Member) error {
	first := make(map[NodeID]int, len(members))
	for i, m := range members {
		if problem := badID(m.ID); problem != "" {
			return fmt.Errorf("%w: entry %d (at %q) has %s", ErrInvalidMember, i, m.Addr, problem)
		}
		j, seen := first[m.ID]
		switch {
		case !seen:
			first[m.ID] = i
		case members[j] != m:
			return fmt.Errorf("%w: entry %d: %q is at %q and, in entry %d, at %q",
				ErrInvalidMember, i, m.ID, m.Addr, j, members[j].Addr)
		}
	}
	return nil
}

// badID says what is wrong with id as a node's ID, or returns "".
func badID(id NodeID) string {
	switch {
	case id == "":
		return "an empty ID"
	case len(id) > wire.MaxNameLength: // a transport refuses it as its NodeID
		return fmt.Sprintf("an ID of %d bytes, limit %d", len(id), wire.MaxNameLength)
	}
	return ""
}

// NewStatic returns a membership holding the given members. Like
// regexp.MustCompile it is meant for members written in the code: it
// panics with CheckMembers' error if that refuses them.
func NewStatic(members ...Member) *Static {
	if err := CheckMembers(members); err != nil {
		panic(err)
	}
	s := &Static{
		members:   make(map[NodeID]Member),
		watchers:  make(map[int]func(Event)),
		notifying: make(chan struct{}, 1),
	}
	for _, m := range members {
		s.members[m.ID] = m
	}
	return s
}

// Members implements Membership; the result is sorted by ID.
func (s *Static) Members() []Member {
	s.mu.Lock()
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Lookup implements Membership.
func (s *Static) Lookup(id NodeID) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[id]
	return m, ok
}

// Add adds m, or updates it if a member with its ID exists, and notifies
// watchers with Join or Update. It returns an error matching
// ErrInvalidMember, and changes nothing, if m's ID is empty or longer than
// wire.MaxNameLength.
func (s *Static) Add(m Member) error {
	if problem := badID(m.ID); problem != "" {
		return fmt.Errorf("%w: Add of a member (at %q) with %s", ErrInvalidMember, m.Addr, problem)
	}
	s.notifying <- struct{}{}
	defer func() { <-s.notifying }()
	s.mu.Lock()
	old, existed := s.members[m.ID]
	s.members[m.ID] = m
	s.mu.Unlock()
	switch {
	case !existed:
		s.notify(Event{Type: Join, Member: m})
	case old != m:
		s.notify(Event{Type: Update, Member: m})
	}
	return nil
}

// Remove removes the member with the given ID and notifies watchers with
// Leave. Removing an unknown ID does nothing.
func (s *Static) Remove(id NodeID) {
	s.notifying <- struct{}{}
	defer func() { <-s.notifying }()
	s.mu.Lock()
	m, ok := s.members[id]
	delete(s.members, id)
	s.mu.Unlock()
	if ok {
		s.notify(Event{Type: Leave, Member: m})
	}
}

// Watch implements Membership.
func (s *Static) Watch(fn func(Event)) (stop func()) {
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.watchers[id] = fn
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.notifying <- struct{}{} // wait for a running notification
			defer func() { <-s.notifying }()
			s.mu.Lock()
			delete(s.watchers, id)
			s.mu.Unlock()
		})
	}
}

// WatchersMayLookup implements LookupFromWatch: watchers are called
// without the lock Lookup takes.
func (s *Static) WatchersMayLookup() bool { return true }

var _ LookupFromWatch = (*Static)(nil)

// notify runs with the notifying semaphore held.
func (s *Static) notify(ev Event) {
	s.mu.Lock()
	fns := make([]func(Event), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}
