package transport

import (
	"context"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DefaultConcurrency is how many of a verb's requests run at once, node
// wide, when Handle is given no option saying otherwise.
const DefaultConcurrency = 256

// A HandleOption says how a verb's handler runs: Ordered, Concurrent,
// Inline, PerPeer, Named.
type HandleOption func(*verbInfo)

// Ordered runs the verb's messages one at a time per connection, in the
// order they arrived: for a replication stream, a log's appends, anything
// whose next message depends on the last. A slow ordered verb holds up
// only its own messages on that connection: other verbs' messages on it
// go on.
//
// Each lane is a connection of its own. On the urgent and small lanes the
// order of arrival is the order sent; but a message above
// Config.Lanes.LargeThreshold goes on the large lane, whatever the
// verb's override, and there several messages are in flight at once and
// each is handled once its last byte arrives, so a smaller one overtakes
// a larger one sent before it; and messages on different lanes have no
// order between them (see Message.Conn). A verb whose order matters keeps
// its messages within LargeThreshold, or numbers them and lets its
// handler put them back in order.
func Ordered() HandleOption {
	return func(v *verbInfo) { v.ordered, v.inline, v.limit = true, false, 0 }
}

// Concurrent runs the verb's messages — requests and one-way alike — in a
// stage of at most n handlers at once, node wide. Each peer's messages
// start in the order they arrived, and the stage serves the peers with
// waiting messages in turn, so one busy peer does not hold up the others'
// first messages. Those beyond n wait in the stage, holding their bytes
// against the inbound limits (so a full queue pauses or rejects reading,
// as Config.Memory.InboundOverload says) until their turn comes, their
// deadline passes or their caller cancels them. n < 1 means 1.
func Concurrent(n int) HandleOption {
	return func(v *verbInfo) { v.ordered, v.inline, v.limit, v.oneWayOrdered = false, false, max(n, 1), false }
}

// Inline runs the verb's messages on the goroutine that reads their
// connection, in the order they arrived, with no hand-off to another
// goroutine: a request's whole round trip then crosses one goroutine
// fewer on the responder. A connection's Inline handlers run one at a
// time. It is for handlers that return at once — an echo, a heartbeat, a
// lookup in memory — and do not block: while one runs, nothing more is
// read from its connection, so a handler that waits on I/O or a lock, or
// for another message on the same connection, stalls every message
// behind it, or deadlocks. The reader writes the answers to a frame's
// requests together once it has run them, and only when the write cannot
// block (a few KiB queued at most, and the socket's send queue nearly
// empty), so a requester that stops reading its answers does not stop the
// reader; otherwise the connection's reply writer takes them, as any
// other. (An empty large message that waited for room to be granted is
// run by the goroutine that grants it, after the messages read since.)
func Inline() HandleOption {
	return func(v *verbInfo) { v.ordered, v.inline, v.oneWayOrdered, v.limit = false, true, false, 0 }
}

// PerPeer bounds a concurrent verb's handlers for any one peer to n, so
// that one peer cannot take the whole stage; the stage serves the peers
// with waiting messages in turn. It has no effect on an Ordered verb.
func PerPeer(n int) HandleOption {
	return func(v *verbInfo) { v.perPeer = max(n, 1) }
}

// Named gives the verb a name for metrics, logs, traces and errors
// (verb="read" rather than verb="200").
func Named(name string) HandleOption {
	return func(v *verbInfo) { v.name, v.named = name, true }
}

// verbInfo is how a verb's handler runs, and its name.
//
// By default a verb's requests run concurrently, in a stage of
// DefaultConcurrency, and its one-way messages in order per connection:
// requests are independent calls whose caller waits (a read must not wait
// behind another's disk access), while one-way messages are most often a
// stream whose order the sender relies on (mutations, gossip rounds,
// hints). Ordered and Concurrent set both.
type verbInfo struct {
	name          string
	named         bool // by Named, not its number
	ordered       bool // every message in order per connection
	inline        bool // every message on its connection's reader goroutine
	oneWayOrdered bool // one-way messages in order per connection (the default)
	limit         int  // the stage's bound for concurrent messages
	perPeer       int  // 0: no bound per peer
	stage         *stage
}

func newVerbInfo(verb Verb, opts []HandleOption) *verbInfo {
	v := &verbInfo{oneWayOrdered: true, limit: DefaultConcurrency}
	for _, o := range opts {
		o(v)
	}
	if v.name == "" {
		v.name = strconv.FormatUint(uint64(verb), 10)
	}
	return v
}

// staged reports whether the verb's messages run in its stage (some of
// them, or all).
func (v *verbInfo) staged() bool { return !v.ordered && !v.inline }

// runsOrdered reports whether a message of this verb runs in order on its
// connection rather than in the stage.
func (v *verbInfo) runsOrdered(isRequest bool) bool {
	return v.ordered || (!isRequest && v.oneWayOrdered)
}

// stage is a verb's pool of concurrent handlers: at most limit at once,
// node wide, and perPeer for one peer. Messages wait in FIFO queues, one
// per peer, served in turn, for a worker goroutine to take them. Workers
// are woken one at a time: a worker that takes a message and sees more
// waiting wakes the next, so a burst of quick messages is run by a few
// workers in turn rather than a goroutine each, while slow ones soon have
// as many workers as the bound allows. A worker with nothing it may take
// waits idle for up to stageIdle to be woken again, then exits.
type stage struct {
	name    string
	limit   int
	perPeer int
	wake    chan struct{} // wakes idle workers; never more tokens than idle

	mu      sync.Mutex
	running int  // workers running a handler
	idle    int  // workers waiting on wake
	waking  bool // a worker was woken or started and has not yet taken work
	queued  int
	byPeer  map[*peer]*peerWork // running and queued work per peer
	spare   *peerWork           // the last peer's, emptied, for the next (peerWork)
	turn    []*peer             // peers with queued work, in turn order
	expiry  expiries            // the queued work with a deadline
	started int64               // handlers started
	waitSum time.Duration       // the time their messages waited, in total
	maxWait time.Duration
}

// peerWork is a peer's share of a stage.
type peerWork struct {
	running int
	queue   workQueue
}

// waiting is how much of pw's work waits for a worker.
func (pw *peerWork) waiting() int { return pw.queue.waiting }

// keptStageSlots is the most slots an emptied peer's queue keeps for its
// next work: a request at a time would otherwise allocate them each time.
const keptStageSlots = 64

// stageIdle is how long a stage's idle worker waits to be woken before it
// exits.
const stageIdle = time.Second

func newStage(name string, limit, perPeer int) *stage {
	// wake holds at most a token per idle worker, and there are never
	// more workers than the largest limit the stage had (setBounds): its
	// elements have no size, so that capacity costs nothing.
	return &stage{name: name, limit: limit, perPeer: perPeer, wake: make(chan struct{}, math.MaxInt32)}
}

// setBounds gives the stage a verb's new registration's name and bounds
// (Handle): one stage serves a verb across registrations, so that its
// bound holds over the handlers of both and its counters go on. It
// reports whether the caller must start a worker (runStage) for work
// that a raised bound lets start.
func (s *stage) setBounds(name string, limit, perPeer int) (start bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name, s.limit, s.perPeer = name, limit, perPeer
	return s.wakeOneLocked()
}

// rename gives the stage its verb's new name (NameVerb).
func (s *stage) rename(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = name
}

// submit queues w and reports whether the caller must start a worker
// (runStage) for it; otherwise an idle one was woken, or one is on its
// way, or all that may run are running and one takes it when done.
func (s *stage) submit(w *work) (start bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw := s.peerWork(w.ic.peer)
	if pw.waiting() == 0 {
		s.turn = append(s.turn, w.ic.peer)
	}
	pw.queue.push(w)
	s.queued++
	if wait, arm := s.expiry.add(w, w.queuedAt); arm {
		s.expiry.arm(wait, s.expire)
	}
	return s.wakeOneLocked()
}

// withdraw takes w, a request whose caller cancelled it, out of the
// stage, and reports whether it waited there: one a worker has taken
// already is dropped as it starts (cancels.start).
func (s *stage) withdraw(w *work) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withdrawLocked(w)
}

// expire takes the work whose deadline passed while it waited out of the
// stage, and drops it as expired (dropExpired), its room given back: the
// stage's timer rings for it (expiries). Such work has no turn.
func (s *stage) expire() {
	s.mu.Lock()
	expired, t := s.expiry.rang(s.expire)
	for _, w := range expired {
		s.withdrawLocked(w)
	}
	s.mu.Unlock()
	if len(expired) > 0 {
		t.dropExpired(expired)
	}
}

// withdrawLocked is withdraw with the stage's lock held.
func (s *stage) withdrawLocked(w *work) bool {
	p := w.ic.peer
	pw := s.byPeer[p]
	if pw == nil || !pw.queue.withdraw(w, keptStageSlots) {
		return false
	}
	s.expiry.remove(w)
	s.queued--
	if pw.waiting() == 0 {
		if i := slices.Index(s.turn, p); i >= 0 {
			s.turn = slices.Delete(s.turn, i, i+1)
		}
		if pw.running == 0 {
			delete(s.byPeer, p)
			s.spare = pw
		}
	}
	return true
}

// wakeOneLocked wakes an idle worker, or reports that one must be
// started, when work waits, a handler may start, and no worker is on its
// way already.
func (s *stage) wakeOneLocked() (start bool) {
	if s.waking || s.queued == 0 || s.running >= s.limit {
		return false
	}
	s.waking = true
	if s.idle > 0 {
		s.idle--
		s.wake <- struct{}{} // buffered: at most one token per idle worker
		return false
	}
	return true
}

func (s *stage) peerWork(p *peer) *peerWork {
	if s.byPeer == nil {
		s.byPeer = make(map[*peer]*peerWork)
	}
	pw := s.byPeer[p]
	if pw == nil {
		if pw, s.spare = s.spare, nil; pw == nil {
			pw = &peerWork{}
		}
		s.byPeer[p] = pw
	}
	return pw
}

// take is a worker's turn: woken says it was woken or started (and so
// clears waking), done the peer of the handler it just ran, if any. It
// returns the work to run next, waking another worker if more waits, and
// whether a worker must be started for that; nil work means the worker is
// now idle, to wait on wake.
func (s *stage) take(woken bool, done *peer, now time.Time) (next *work, start bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if woken {
		s.waking = false
	}
	if done != nil {
		s.running--
		pw := s.byPeer[done]
		pw.running--
		if pw.running == 0 && pw.waiting() == 0 {
			delete(s.byPeer, done)
			s.spare = pw
		}
	}
	if next = s.next(); next == nil {
		s.idle++
		return nil, false
	}
	s.running++
	wait := stageWait(now, next.queuedAt)
	s.started++
	s.waitSum += wait
	s.maxWait = max(s.maxWait, wait)
	return next, s.wakeOneLocked()
}

// stageWait is how long work queued at queuedAt (monoNanos) waited for
// its turn, which came at now: the worker's reading, made before it took
// the stage's lock, so work queued meanwhile waited none rather than a
// negative time.
func stageWait(now time.Time, queuedAt int64) time.Duration {
	return max(now.Sub(monoTime(queuedAt)), 0)
}

// retire lets an idle worker go, unless it was woken meanwhile: then it
// reports true and takes its turn.
func (s *stage) retire() (woken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.wake:
		return true
	default:
		s.idle--
		return false
	}
}

// next takes the first work of the first peer in turn that may start one,
// and moves that peer to the back of the turn; nil if none may.
func (s *stage) next() *work {
	if s.running >= s.limit {
		return nil
	}
	for i, p := range s.turn {
		pw := s.byPeer[p]
		if s.perPeer > 0 && pw.running >= s.perPeer {
			continue
		}
		w := pw.queue.pop(keptStageSlots)
		s.expiry.remove(w)
		pw.running++
		s.queued--
		// slices.Delete clears the slot past the new end: left there, the
		// last peer served stayed reachable from the stage after it left
		// or was forgotten, and from the stage's expiry timer, set until
		// the last deadline seen, after the transport closed.
		s.turn = slices.Delete(s.turn, i, i+1)
		if pw.waiting() > 0 {
			s.turn = append(s.turn, p)
		}
		return w
	}
	return nil
}

// StageStats describes one verb's stage (see Concurrent). A message
// counts in Started, WaitSum and MaxWait when its turn comes, whether its
// handler then runs or it is dropped instead (expired, cancelled, its
// connection or the transport gone: DroppedInbound says which): its wait
// is the stage's either way. A request withdrawn as its caller's cancel
// arrives, dropped as cancelled, and a message withdrawn as its deadline
// passes, dropped as expired, have no turn.
type StageStats struct {
	Verb    Verb
	Name    string
	Limit   int           // handlers at once, node wide
	Active  int           // messages taking their turn now: handlers running
	Queued  int           // messages waiting for a handler now
	Started int64         // messages whose turn came: handlers started, or dropped
	WaitSum time.Duration // the time they waited for their turn, in total
	MaxWait time.Duration
}

func (s *stage) stats(verb Verb) StageStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StageStats{Verb: verb, Name: s.name, Limit: s.limit, Active: s.running, Queued: s.queued,
		Started: s.started, WaitSum: s.waitSum, MaxWait: s.maxWait}
}

// stageInstruments are the stages' metrics: active handlers and queued
// messages observed at collection, and each message's wait for its
// handler recorded as it starts, each by verb.
type stageInstruments struct {
	wait         metric.Float64Histogram
	active       metric.Int64ObservableGauge
	queued       metric.Int64ObservableGauge
	registration metric.Registration
	attrs        sync.Map // verb name → []metric.RecordOption (see connAttrs)
}

func (si *stageInstruments) register(m metric.Meter, t *Transport) error {
	var err error
	if si.wait, err = m.Float64Histogram("internode.stage.wait",
		metric.WithDescription("Time a message waited for a handler of its verb's stage"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(stageWaitBounds...)); err != nil {
		return err
	}
	if si.active, err = m.Int64ObservableGauge("internode.stage.active",
		metric.WithDescription("Handlers of a verb's stage running now"), metric.WithUnit("{handler}")); err != nil {
		return err
	}
	if si.queued, err = m.Int64ObservableGauge("internode.stage.queued",
		metric.WithDescription("Messages waiting for a handler of a verb's stage now"), metric.WithUnit("{message}")); err != nil {
		return err
	}
	si.registration, err = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		for _, s := range t.stageStats() {
			verb := metric.WithAttributes(attribute.String("verb", s.Name))
			obs.ObserveInt64(si.active, int64(s.Active), verb)
			obs.ObserveInt64(si.queued, int64(s.Queued), verb)
		}
		return nil
	}, si.active, si.queued)
	return err
}

func (si *stageInstruments) recordWait(verb string, d time.Duration) {
	si.wait.Record(context.Background(), d.Seconds(), verbOptions(&si.attrs, verb)...)
}
