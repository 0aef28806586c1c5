package transport

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// call is one Request waiting for its response.
type call struct {
	peer cluster.NodeID
	lane routing.Lane    // the lane the request travels on, for errors
	done chan callResult // one slot: completion never blocks
	id   uint64          // the request's, while in the table
	// sentOn is the serial of the connection the request was written
	// on, 0 until it is written, and prevOnConn and nextOnConn link it
	// among the shard's other calls written on that connection
	// (callShard.onConn); guarded by its shard's lock.
	sentOn                 uint64
	prevOnConn, nextOnConn *call
	timer                  *time.Timer // the caller's, for a default timeout (startTimer)
	// entry is the peer entry the request was last handed to (send), nil
	// before: a Leave fails the calls of the entry it ends (failEntry),
	// not those still on their way to one: they meet the stopped entry
	// and fail there (ErrPeerLeft), find the node unknown
	// (ErrUnknownPeer), or meet the entry of a node that joined again
	// and go on.
	entry atomic.Pointer[peer]
}

// newCall returns a call from the table's pool: a call, its channel and
// its timer are allocations a request would make otherwise. The pool is
// the table's, not the process's: a channel or timer made inside a
// testing/synctest bubble must not be used outside it, and a transport's
// calls are all made in the same place as the transport.
func (t *callTable) newCall(peer cluster.NodeID, lane routing.Lane) *call {
	c, _ := t.pool.Get().(*call)
	if c == nil {
		c = &call{done: make(chan callResult, 1)}
	}
	c.peer, c.lane, c.sentOn = peer, lane, 0
	c.entry.Store(nil)
	return c
}

// free gives back c, finished: its request has returned, so it is out of
// the table, its one result, if one was sent, received, and its timer
// stopped.
func (t *callTable) free(c *call) {
	c.peer = ""
	c.entry.Store(nil) // nor keep a departed entry alive in the pool
	t.pool.Put(c)
}

// startTimer arms c's timer, made on first use, to fire after d.
func (c *call) startTimer(d time.Duration) <-chan time.Time {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	return c.timer.C
}

// stopTimer stops c's timer when its request returns. A timer that fired
// is dropped, not kept for the call's next request: with GODEBUG
// asynctimerchan=1 (the timers of Go before 1.23) its tick may be in its
// channel, or on its way there, where Reset would not discard it, and the
// next request would take it for its own timeout.
func (c *call) stopTimer() {
	if !c.timer.Stop() {
		c.timer = nil
	}
}

type callResult struct {
	payload []byte
	err     error
}

const callShards = 32

// callTable holds the requests in flight, sharded by ID to keep the lock
// cold under many concurrent requests.
type callTable struct {
	shards [callShards]callShard
	pool   sync.Pool // finished calls (newCall)
}

// callShard is one shard of the table: its calls by ID and, for each
// connection, those written on it, so that a connection's end fails its
// own calls without a look at every call in flight to every peer.
type callShard struct {
	mu     sync.Mutex
	calls  map[uint64]*call
	onConn map[uint64]*call // connection serial → first of its calls (nextOnConn)
}

func (t *callTable) shard(id uint64) *callShard {
	return &t.shards[id%callShards]
}

func (t *callTable) add(id uint64, c *call) {
	s := t.shard(id)
	s.mu.Lock()
	if s.calls == nil {
		s.calls = make(map[uint64]*call)
	}
	c.id = id
	s.calls[id] = c
	s.mu.Unlock()
}

// drop takes c out of the shard. s.mu must be held.
func (s *callShard) drop(c *call) {
	delete(s.calls, c.id)
	s.unlink(c)
}

// link lists c among the calls written on connection serial. s.mu must
// be held.
func (s *callShard) link(c *call, serial uint64) {
	if s.onConn == nil {
		s.onConn = make(map[uint64]*call)
	}
	c.sentOn, c.prevOnConn, c.nextOnConn = serial, nil, s.onConn[serial]
	if c.nextOnConn != nil {
		c.nextOnConn.prevOnConn = c
	}
	s.onConn[serial] = c
}

// unlink takes c off the list of its connection, if it was written on
// one. s.mu must be held.
func (s *callShard) unlink(c *call) {
	if c.sentOn == 0 {
		return
	}
	switch {
	case c.prevOnConn != nil:
		c.prevOnConn.nextOnConn = c.nextOnConn
	case c.nextOnConn != nil:
		s.onConn[c.sentOn] = c.nextOnConn
	default:
		delete(s.onConn, c.sentOn)
	}
	if c.nextOnConn != nil {
		c.nextOnConn.prevOnConn = c.prevOnConn
	}
	c.sentOn, c.prevOnConn, c.nextOnConn = 0, nil, nil
}

// remove takes the call out of the table; false if it was already finished.
func (t *callTable) remove(id uint64) (*call, bool) {
	s := t.shard(id)
	s.mu.Lock()
	c, ok := s.calls[id]
	if ok {
		s.drop(c)
	}
	s.mu.Unlock()
	return c, ok
}

// waiting reports whether a call with this ID waits for a response from
// peer.
func (t *callTable) waiting(id uint64, from cluster.NodeID) bool {
	s := t.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[id]
	return ok && c.peer == from
}

// complete delivers a response from peer. A response from another peer
// than the one asked, or for a call no longer waiting, is ignored and
// reported false.
func (t *callTable) complete(id uint64, from cluster.NodeID, r callResult) bool {
	c, ok := t.take(id, from)
	if ok {
		c.done <- r
	}
	return ok
}

// take takes the call id out of the table, for its response from peer,
// which its caller then delivers (done); false, and nothing taken, when
// the call asked another peer or no longer waits.
func (t *callTable) take(id uint64, from cluster.NodeID) (*call, bool) {
	s := t.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[id]
	if !ok || c.peer != from {
		return nil, false
	}
	s.drop(c)
	return c, true
}

func (t *callTable) fail(id uint64, err error) {
	if c, ok := t.remove(id); ok {
		c.done <- callResult{err: err}
	}
}

// pendingOn reports whether a request written on connection serial still
// waits for its response (which comes back on that connection).
func (t *callTable) pendingOn(serial uint64) bool {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		pending := s.onConn[serial] != nil
		s.mu.Unlock()
		if pending {
			return true
		}
	}
	return false
}

// written records that request id went out on connection serial.
func (t *callTable) written(id, serial uint64) {
	s := t.shard(id)
	s.mu.Lock()
	if c, ok := s.calls[id]; ok && c.sentOn != serial {
		s.unlink(c)
		s.link(c, serial)
	}
	s.mu.Unlock()
}

// failConn fails the calls whose request was written on connection
// serial, which broke: their response will not come on it, and a request
// cannot be resent blindly, so the caller hears at once. It looks at
// those calls only, however many others are in flight.
func (t *callTable) failConn(serial uint64, err error) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for c := s.onConn[serial]; c != nil; c = s.onConn[serial] {
			s.drop(c)
			c.done <- callResult{err: &OpError{Op: "request", Peer: c.peer, Lane: c.lane, Err: err}}
		}
		s.mu.Unlock()
	}
}

// failEntry fails every call whose request was handed to entry p with an
// *OpError wrapping err.
func (t *callTable) failEntry(p *peer, err error) {
	t.failEach(func(c *call) bool { return c.entry.Load() == p }, err)
}

// failPeer fails every call waiting on peer (nil peer: every call) with
// an *OpError wrapping err.
func (t *callTable) failPeer(peer *cluster.NodeID, err error) {
	t.failEach(func(c *call) bool { return peer == nil || c.peer == *peer }, err)
}

// failEach fails every call that match says to with an *OpError wrapping
// err.
func (t *callTable) failEach(match func(*call) bool, err error) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, c := range s.calls {
			if match(c) {
				s.drop(c)
				c.done <- callResult{err: &OpError{Op: "request", Peer: c.peer, Lane: c.lane, Err: err}}
			}
		}
		s.mu.Unlock()
	}
}
