package cluster

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	n1 = Member{ID: "n1", Addr: "127.0.0.1:7001"}
	n2 = Member{ID: "n2", Addr: "127.0.0.1:7002"}
	n3 = Member{ID: "n3", Addr: "127.0.0.1:7003"}
)

// recorder collects the events a watcher receives.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) record(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) get() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func TestEventTypeString(t *testing.T) {
	tests := []struct {
		typ  EventType
		want string
	}{
		{Join, "join"},
		{Leave, "leave"},
		{Update, "update"},
		{0, "event(0)"},
		{42, "event(42)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.typ.String())
	}
}

func TestStaticMembersSorted(t *testing.T) {
	tests := []struct {
		name    string
		initial []Member
		want    []Member
	}{
		{"empty", nil, []Member{}},
		{"one", []Member{n2}, []Member{n2}},
		{"unsorted input", []Member{n3, n1, n2}, []Member{n1, n2, n3}},
		{"same member twice", []Member{n1, n1}, []Member{n1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, NewStatic(tt.initial...).Members())
		})
	}
}

func TestStaticMembersReturnsACopy(t *testing.T) {
	s := NewStatic(n1)
	got := s.Members()
	got[0].Addr = "changed"
	assert.Equal(t, []Member{n1}, s.Members())
}

func TestStaticLookup(t *testing.T) {
	s := NewStatic(n1, n2)
	tests := []struct {
		id     NodeID
		want   Member
		wantOK bool
	}{
		{"n1", n1, true},
		{"n2", n2, true},
		{"n3", Member{}, false},
		{"", Member{}, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.id), func(t *testing.T) {
			got, ok := s.Lookup(tt.id)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestStaticChanges(t *testing.T) {
	n2moved := Member{ID: "n2", Addr: "127.0.0.1:8002"}
	tests := []struct {
		name        string
		initial     []Member
		change      func(s *Static)
		wantEvents  []Event
		wantMembers []Member
	}{
		{
			name:        "add new member joins",
			initial:     []Member{n1},
			change:      func(s *Static) { s.Add(n2) },
			wantEvents:  []Event{{Type: Join, Member: n2}},
			wantMembers: []Member{n1, n2},
		},
		{
			name:        "add changed member updates",
			initial:     []Member{n1, n2},
			change:      func(s *Static) { s.Add(n2moved) },
			wantEvents:  []Event{{Type: Update, Member: n2moved}},
			wantMembers: []Member{n1, n2moved},
		},
		{
			name:        "add identical member is silent",
			initial:     []Member{n1, n2},
			change:      func(s *Static) { s.Add(n2) },
			wantEvents:  nil,
			wantMembers: []Member{n1, n2},
		},
		{
			name:        "remove member leaves",
			initial:     []Member{n1, n2},
			change:      func(s *Static) { s.Remove("n2") },
			wantEvents:  []Event{{Type: Leave, Member: n2}},
			wantMembers: []Member{n1},
		},
		{
			name:        "remove unknown member is silent",
			initial:     []Member{n1},
			change:      func(s *Static) { s.Remove("n2") },
			wantEvents:  nil,
			wantMembers: []Member{n1},
		},
		{
			name:        "remove twice leaves once",
			initial:     []Member{n1, n2},
			change:      func(s *Static) { s.Remove("n2"); s.Remove("n2") },
			wantEvents:  []Event{{Type: Leave, Member: n2}},
			wantMembers: []Member{n1},
		},
		{
			name:    "leave then rejoin",
			initial: []Member{n1, n2},
			change:  func(s *Static) { s.Remove("n2"); s.Add(n2moved) },
			wantEvents: []Event{
				{Type: Leave, Member: n2},
				{Type: Join, Member: n2moved},
			},
			wantMembers: []Member{n1, n2moved},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStatic(tt.initial...)
			var rec recorder
			stop := s.Watch(rec.record)
			defer stop()
			tt.change(s)
			assert.Equal(t, tt.wantEvents, rec.get())
			assert.Equal(t, tt.wantMembers, s.Members())
		})
	}
}

func TestStaticWatchersSeeEventsInOrder(t *testing.T) {
	s := NewStatic(n1)
	var first, second recorder
	stopFirst := s.Watch(first.record)
	defer stopFirst()
	stopSecond := s.Watch(second.record)
	defer stopSecond()

	s.Add(n2)
	s.Add(n3)
	s.Add(Member{ID: "n3", Addr: "127.0.0.1:8003"})
	s.Remove("n1")
	s.Remove("n2")

	want := []Event{
		{Type: Join, Member: n2},
		{Type: Join, Member: n3},
		{Type: Update, Member: Member{ID: "n3", Addr: "127.0.0.1:8003"}},
		{Type: Leave, Member: n1},
		{Type: Leave, Member: n2},
	}
	assert.Equal(t, want, first.get())
	assert.Equal(t, want, second.get())
}

func TestStaticWatchSeesOnlyLaterChanges(t *testing.T) {
	s := NewStatic()
	s.Add(n1)
	var rec recorder
	stop := s.Watch(rec.record)
	defer stop()
	s.Add(n2)
	assert.Equal(t, []Event{{Type: Join, Member: n2}}, rec.get())
}

func TestStaticStop(t *testing.T) {
	s := NewStatic()
	var stopped, kept recorder
	stop := s.Watch(stopped.record)
	stopKept := s.Watch(kept.record)
	defer stopKept()

	s.Add(n1)
	stop()
	s.Add(n2)
	require.NotPanics(t, stop, "second stop")
	s.Remove("n1")

	assert.Equal(t, []Event{{Type: Join, Member: n1}}, stopped.get())
	assert.Equal(t, []Event{
		{Type: Join, Member: n1},
		{Type: Join, Member: n2},
		{Type: Leave, Member: n1},
	}, kept.get())
}

// TestStaticStopWaitsForRunningCallback blocks a callback inside Add and
// checks that stop waits for it. Inside a synctest bubble,
// synctest.Wait returns only when every goroutine is blocked, so stop is
// observed waiting rather than merely not finished yet.
func TestStaticStopWaitsForRunningCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewStatic()
		release := make(chan struct{})
		var calls []Event
		stop := s.Watch(func(ev Event) {
			calls = append(calls, ev)
			<-release
		})

		go s.Add(n1)
		synctest.Wait() // the callback is blocked on release

		stopDone := make(chan struct{})
		go func() {
			defer close(stopDone)
			stop()
		}()
		synctest.Wait() // stop is blocked too
		select {
		case <-stopDone:
			t.Fatal("stop returned while the callback was running")
		default:
		}

		close(release)
		<-stopDone
		s.Add(n2)
		assert.Equal(t, []Event{{Type: Join, Member: n1}}, calls)
	})
}

// TestStaticConcurrent hammers a Static from many goroutines; run it with
// -race. Watchers that exist from the start must see every change in the
// order it was applied, so replaying their events rebuilds Members().
func TestStaticConcurrent(t *testing.T) {
	const (
		writers   = 8
		changes   = 300
		watchers  = 4
		memberIDs = 10
	)
	s := NewStatic()

	replays := make([]map[NodeID]Member, watchers)
	stops := make([]func(), watchers)
	for i := range watchers {
		state := make(map[NodeID]Member)
		replays[i] = state
		stops[i] = s.Watch(func(ev Event) { // calls are serialised: no lock needed
			switch ev.Type {
			case Join, Update:
				state[ev.Member.ID] = ev.Member
			case Leave:
				delete(state, ev.Member.ID)
			}
		})
	}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range changes {
				id := NodeID(fmt.Sprintf("n%d", rng.IntN(memberIDs)))
				switch rng.IntN(3) {
				case 0, 1:
					s.Add(Member{ID: id, Addr: fmt.Sprintf("127.0.0.1:%d", 7000+rng.IntN(3))})
				case 2:
					s.Remove(id)
				}
			}
		})
	}
	// Watchers come and go while the writers run.
	wg.Go(func() {
		for range changes {
			var rec recorder
			stop := s.Watch(rec.record)
			_ = s.Members()
			_, _ = s.Lookup("n1")
			stop()
			stop()
		}
	})
	wg.Wait()

	for i := range watchers {
		stops[i]()
	}
	want := make(map[NodeID]Member)
	for _, m := range s.Members() {
		want[m.ID] = m
	}
	for i, got := range replays {
		assert.Equal(t, want, got, "watcher %d", i)
	}
}
