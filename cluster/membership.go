package cluster

import "fmt"

// NodeID names a node uniquely within its cluster. It is sent in every
// handshake and, with TLS, bound to the node's certificate.
type NodeID string

// Member is one node of the cluster.
type Member struct {
	ID   NodeID
	Addr string // the transport's listen address, "host:port"
}

// EventType says what happened to a member.
type EventType uint8

const (
	// Join: a member appeared.
	Join EventType = iota + 1
	// Leave: a member left or was declared dead.
	Leave
	// Update: a member's address or metadata changed.
	Update
)

func (t EventType) String() string {
	switch t {
	case Join:
		return "join"
	case Leave:
		return "leave"
	case Update:
		return "update"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is one change in membership.
type Event struct {
	Type   EventType
	Member Member
}

// Membership tells the transport who exists and where.
//
// Implementations must be safe for concurrent use.
type Membership interface {
	// Members returns the current members, the local node included.
	Members() []Member
	// Lookup returns the member with the given ID.
	Lookup(id NodeID) (Member, bool)
	// Watch calls fn for every change from now on, in order, until the
	// returned stop function is called. fn must not block for long and must
	// not call stop itself; stop waits for a running fn to return.
	//
	// An implementation that delivers events from its own goroutine may,
	// while fn is behind, merge consecutive changes to one member into its
	// latest state (cluster/memberlist does; Static never does). Callers that
	// apply Join and Update as "set" and Leave as "delete" are correct
	// either way; such callers should Watch before reading Members.
	Watch(fn func(Event)) (stop func())
}

// LookupFromWatch is an optional interface of a Membership whose watchers
// may call its Lookup: it holds no lock that Lookup takes while it calls
// them. Static and cluster/memberlist's Membership implement it.
//
// A Membership that tells its watchers from a goroutine of its own, after
// its member map has changed, may tell of a Leave once the member is back
// (its Join follows). The transport asks Lookup when told of a Leave, if
// WatchersMayLookup reports true, and ignores a Leave of a member that
// Lookup still finds: it would fail requests that the member, back, is
// handling. Without this interface the transport cannot ask, since a
// Membership may tell its watchers under the lock its Lookup takes.
//
// Knowing that a dialling writer may ask Lookup meanwhile, the transport
// also waits, while told of a Leave, for the member's writers to stop and
// its dropped messages to be handed to OnDropped, so that they are told
// before a Join of the member that follows.
//
// Implement it only if Lookup reads the member map the events describe,
// changed before each event is queued, and every later removal is told
// as a Leave: a Lookup that lags its events, or reads another source,
// could keep a departed member's entry for good.
type LookupFromWatch interface {
	Membership
	// WatchersMayLookup reports whether a function passed to Watch may
	// call Lookup. A wrapper that embeds an implementation gets its
	// answer; one that cannot keep the promise must report false.
	WatchersMayLookup() bool
}
