package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Transport moves messages between this node and its peers.
//
// A Transport is safe for concurrent use. Create it with New, register
// handlers with Handle, start accepting with Start or Serve, and stop it
// with Shutdown (graceful) or Close.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	router   *routing.Router
	maxFrame int
	waker    *readWaker // nil where readers are not woken (see wake.go)
	ln       net.Listener
	// quietFor is callerWriteIdle; tests set it to zero (SetCallerWriteIdle)
	// so that they need not wait for a lane to go quiet.
	quietFor time.Duration

	// urgentOverdrafts counts the small urgent frames held beyond the
	// inbound limits (takeUrgentOverdraft), at most maxUrgentOverdrafts.
	urgentOverdrafts atomic.Int64
	// urgentOverdraftFreed is closed, and replaced, when such a frame is
	// given back: a reader waiting for a small urgent frame's room tries
	// for the allowance again (readAdmitted). Made on first use.
	urgentOverdraftFreed atomic.Pointer[chan struct{}]

	handlersMu     sync.Mutex // serialises Handle; readers use handlers
	handlers       atomic.Pointer[map[Verb]handlerEntry]
	stages         map[Verb]*stage                 // every verb's stage, kept across registrations (handlersMu)
	verbNames      atomic.Pointer[map[Verb]string] // guarded by handlersMu for writing
	verbNumbers    sync.Map                        // Verb → its number as a string, for unnamed verbs
	streamHandlers atomic.Pointer[map[Verb]StreamHandler]
	fileHandlers   atomic.Pointer[map[Verb]FileHandler]

	peersMu sync.RWMutex
	peers   map[cluster.NodeID]*peer
	// peersView is a read-only copy of peers for the send path, replaced
	// (under peersMu) whenever peers changes, which is rare.
	peersView atomic.Pointer[map[cluster.NodeID]*peer]
	departed  []*peer // peers that left; Stats keeps their counts (at most maxDepartedIDs gone for good)
	// strangerEntries counts the entries in peers of peers that are not
	// members, at most Security.MaxConns made by their handshakes (see
	// claimConnLocked); under peersMu. sweepNow asks the janitor to
	// forget the quiet ones before its next tick.
	strangerEntries int
	sweepNow        chan struct{}

	inboundMu sync.Mutex
	inbound   map[net.Conn]struct{} // accepted connections, handshaken or not
	inConns   map[*inConn]struct{}  // handshaken message connections
	// answered counts the message connections answered Accepted (or
	// being answered), whose peers may write from then on, and not yet
	// in inConns: finishInbound waits for them too (answeredEnd).
	answered int
	// Unfinished inbound handshakes, in total and by remote host (oldest
	// first), and established inbound connections of every kind.
	pendingHandshakes int
	pendingByHost     map[string][]*pendingHandshake
	pendingSeq        uint64 // the last pendingHandshake.seq given
	established       int

	tel   *telemetry
	tls   *tlsState // nil without TLS
	clock clock
	calls callTable
	// nextID numbers this node's messages. It starts at random, so that a
	// restarted node's IDs do not meet what its peers remember of the
	// last incarnation's (cancels that came after their request).
	nextID atomic.Uint64
	// nextConnID numbers inbound connections (Message.Conn).
	nextConnID atomic.Uint64

	coalescing atomic.Pointer[func(routing.Lane) coalescing.Strategy]

	// The node's outbound and inbound budgets (peers' and connections'
	// accounts are nested in them), and the limits in force (SetLimits
	// changes them).
	outBudget, inBudget *limit.Budget
	// rejectedS2 bounds, node-wide, what the compressed batch frames that
	// OverloadReject rejects hold while they are read and answered, their
	// blocks and decoded batches (see rejectedS2Budget).
	rejectedS2          *limit.Budget
	limitsOut, limitsIn atomic.Pointer[Limits]
	// limitsMu is held by SetLimits, one at a time, and by Shutdown
	// refusing the requests waiting for room: both grant waiters on
	// their caller's goroutine, which Close waits for by taking it.
	limitsMu sync.Mutex
	// strangers sums the counters of peers that were not members and were
	// forgotten once quiet; departedTotals those of departed entries
	// dropped beyond maxDepartedIDs (capDeparted).
	strangers, departedTotals laneTotals

	// File transfers.
	fileLimiter                      *rate.Limiter // nil when unlimited
	filesReceiving                   atomic.Int32
	filesSending                     atomic.Int32 // SendFile calls moving bytes now
	filesSent, filesReceived         atomic.Uint64
	fileBytesSent, fileBytesReceived atomic.Uint64
	fileSendFailures                 atomic.Uint64
	fileReceiveFailures              atomic.Uint64

	// Streams (Stats.StreamsOpened and the rest).
	streamsOpened, streamOpenFailures    atomic.Uint64
	streamsAccepted, streamsRefused      atomic.Uint64
	streamBytesSent, streamBytesReceived atomic.Uint64

	refusals  [NumRefusals]atomic.Uint64
	probes    atomic.Uint64               // inbound connections closed before sending a byte
	malformed [numBadInputs]atomic.Uint64 // inbound connections closed on bad input, by kind
	logs      rateLog

	ctx        context.Context // handlers' base context; cancelled by Close
	cancel     context.CancelFunc
	closing    atomic.Bool   // Shutdown or Close began: refuse new messages
	drainedAll atomic.Bool   // a Shutdown finished its drain, reads and handling before the transport closed
	finishing  atomic.Bool   // a drained Shutdown closed the listener and reads on until peers close (finishInbound)
	lnOnce     sync.Once     // closes ln (closeListener)
	working    atomic.Int64  // messages routed to their handlers and not yet done with (route, doneWork)
	closed     chan struct{} // closed by Close
	draining   chan struct{} // closed by Shutdown: writers stop waiting to coalesce
	drainOnce  sync.Once
	closeOnce  sync.Once
	startOnce  sync.Once
	drained    chan struct{} // one slot: a writer found its queue empty
	stopWatch  func()
	wg         sync.WaitGroup // every goroutine the transport owns
	// streamsHeld is what every peer's accepted stream connections hold
	// of the node's inbound capacity (holdStreamConn).
	streamsHeld atomic.Int64
	// sessionDrains is each live stream session's sessionDrain, by its
	// *smux.Session.
	sessionDrains sync.Map
}

// New checks cfg, binds the listener and returns a transport that can send
// at once. It accepts connections once Start or Serve is called.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := cfg.withDefaults().Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	if ln == nil {
		return nil, errors.New("transport: listen: Config.Listen returned neither a listener nor an error")
	}
	t, err := newTransport(cfg, ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return t, nil
}

// newTransport builds a transport on ln from a valid cfg.
func newTransport(cfg Config, ln net.Listener) (*Transport, error) {
	cfg = cfg.withDefaults()
	overrides := make(map[uint32]routing.Lane, len(cfg.Lanes.Overrides))
	for verb, lane := range cfg.Lanes.Overrides {
		overrides[uint32(verb)] = lane
	}
	t := &Transport{
		waker:         theReadWaker(),
		cfg:           cfg,
		log:           cfg.Telemetry.Logger,
		router:        routing.NewRouter(cfg.Lanes.LargeThreshold, overrides),
		maxFrame:      wire.DefaultMaxFramePayload,
		quietFor:      callerWriteIdle,
		ln:            ln,
		peers:         make(map[cluster.NodeID]*peer),
		sweepNow:      make(chan struct{}, 1),
		inbound:       make(map[net.Conn]struct{}),
		inConns:       make(map[*inConn]struct{}),
		pendingByHost: make(map[string][]*pendingHandshake),
		closed:        make(chan struct{}),
		draining:      make(chan struct{}),
		drained:       make(chan struct{}, 1),
	}
	t.nextID.Store(rand.Uint64() >> 1) // room to count up from it for ever
	t.fileLimiter = newFileLimiter(cfg.Files)
	t.handlers.Store(&map[Verb]handlerEntry{})
	t.stages = make(map[Verb]*stage)
	t.verbNames.Store(&map[Verb]string{})
	t.streamHandlers.Store(&map[Verb]StreamHandler{})
	t.fileHandlers.Store(&map[Verb]FileHandler{})
	t.publishPeers()
	t.coalescing.Store(&cfg.Lanes.Coalescing)
	t.limitsOut.Store(&cfg.Memory.Outbound)
	t.limitsIn.Store(&cfg.Memory.Inbound)
	t.outBudget = limit.NewBudget(cfg.Memory.Outbound.Node)
	t.outBudget.Root().SetReserve(responseReserve(cfg.Memory.Outbound.Node, cfg.Memory.MaxMessageSize))
	t.inBudget = limit.NewBudget(cfg.Memory.Inbound.Node)
	t.rejectedS2 = limit.NewBudget(rejectedS2Budget(t.maxFrame))
	t.logs = rateLog{log: cfg.Telemetry.Logger, every: time.Second, burst: 5}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if cfg.Security.TLS != nil {
		t.tls = newTLSState(cfg.Security.TLS, cfg.ClusterName)
		t.checkOwnIdentity()
		t.checkTLS(false)
	}
	var err error
	if t.tel, err = newTelemetry(t, cfg.Telemetry.MeterProvider, cfg.Telemetry.TracerProvider); err != nil {
		t.cancel()
		return nil, fmt.Errorf("transport: metrics: %w", err)
	}
	t.stopWatch = cfg.Membership.Watch(t.membershipChanged)
	return t, nil
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// NodeID returns this node's ID.
func (t *Transport) NodeID() cluster.NodeID { return t.cfg.NodeID }

// Start accepts connections in a goroutine owned by the transport. Calling
// it more than once has no further effect.
func (t *Transport) Start() {
	t.startOnce.Do(func() {
		t.wg.Add(2)
		go func() {
			defer t.wg.Done()
			t.acceptLoop()
		}()
		go func() {
			defer t.wg.Done()
			t.janitor()
		}()
		if t.tls != nil && t.tls.cfg.ReloadInterval > 0 {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.tlsLoop()
			}()
		}
	})
}

// Serve starts accepting connections and blocks until the transport is
// closed; it then returns ErrClosed.
func (t *Transport) Serve() error {
	t.Start()
	<-t.closed
	return ErrClosed
}

// Handle registers h for verb, replacing any previous handler, with
// options saying how it runs (Ordered, Concurrent, PerPeer) and its name
// (Named). By default the verb's requests run concurrently, at most
// DefaultConcurrency at once, and its one-way messages one at a time per
// connection in arrival order. Safe to call while serving; messages
// already handed over finish as they were registered, with one exception:
// a verb has one stage (Concurrent, PerPeer), whose bounds a new
// registration changes, and which holds over the handlers of the old
// registration still running as over the new.
func (t *Transport) Handle(verb Verb, h Handler, opts ...HandleOption) {
	t.handlersMu.Lock()
	defer t.handlersMu.Unlock()
	next := maps.Clone(*t.handlers.Load())
	if h == nil {
		delete(next, verb)
	} else {
		info := newVerbInfo(verb, opts)
		if name, ok := (*t.verbNames.Load())[verb]; ok && !info.named {
			// Named before (by Named, or NameVerb): a registration that
			// does not name the verb keeps its name, which the node's
			// requests, errors and logs go on using.
			info.name = name
		}
		if info.staged() {
			// The verb's one stage: its bound holds over the handlers of
			// this registration and the last's still running, and its
			// counters go on (Stats.Stages keeps it after a removal).
			if s := t.stages[verb]; s != nil {
				if s.setBounds(info.name, info.limit, info.perPeer) {
					t.wg.Add(1)
					go t.runStage(s)
				}
				info.stage = s
			} else {
				info.stage = newStage(info.name, info.limit, info.perPeer)
				t.stages[verb] = info.stage
			}
		}
		next[verb] = handlerEntry{h, info}
		if info.named {
			t.nameVerbLocked(verb, info.name)
		}
	}
	t.handlers.Store(&next)
}

// NameVerb names verb for this node's metrics, logs, traces and errors —
// for the verbs it sends requests with, say, which it has no handler for
// (Named names a handled verb). A handled verb is renamed too, its stage
// included. A verb once named keeps its name through registrations that
// do not name it (Handle without Named).
func (t *Transport) NameVerb(verb Verb, name string) {
	t.handlersMu.Lock()
	defer t.handlersMu.Unlock()
	t.nameVerbLocked(verb, name)
	// A verb handled already is reported under its new name too: its
	// stage (Stats.Stages, the stage metrics) and the messages handed
	// over from now on (the stage's waits, the handlers' spans).
	if s := t.stages[verb]; s != nil {
		s.rename(name)
	}
	if e, ok := (*t.handlers.Load())[verb]; ok && e.info.name != name {
		info := *e.info
		info.name = name
		next := maps.Clone(*t.handlers.Load())
		next[verb] = handlerEntry{e.h, &info}
		t.handlers.Store(&next)
	}
}

func (t *Transport) nameVerbLocked(verb Verb, name string) {
	next := maps.Clone(*t.verbNames.Load())
	next[verb] = name
	t.verbNames.Store(&next)
}

// handlerEntry is a verb's handler and how it runs.
type handlerEntry struct {
	h    Handler
	info *verbInfo
}

// handlerFor returns verb's handler and how it runs; nil if none.
func (t *Transport) handlerFor(verb Verb) (Handler, *verbInfo) {
	e := (*t.handlers.Load())[verb]
	return e.h, e.info
}

// verbName is verb's name (Named, NameVerb), or its number.
func (t *Transport) verbName(verb Verb) string {
	if name, ok := (*t.verbNames.Load())[verb]; ok {
		return name
	}
	if name, ok := t.verbNumbers.Load(verb); ok {
		return name.(string)
	}
	name, _ := t.verbNumbers.LoadOrStore(verb, strconv.FormatUint(uint64(verb), 10))
	return name.(string)
}

// setHandler replaces verb's entry of a copy-on-write handler table (nil
// h removes it): readers load the table without a lock.
func setHandler[H any](mu *sync.Mutex, table *atomic.Pointer[map[Verb]H], verb Verb, h H) {
	mu.Lock()
	defer mu.Unlock()
	next := maps.Clone(*table.Load())
	if any(h) == nil {
		delete(next, verb)
	} else {
		next[verb] = h
	}
	table.Store(&next)
}

// signalDrained tells a waiting Shutdown that a writer ran out of work.
func (t *Transport) signalDrained() {
	if !t.closing.Load() {
		return
	}
	select {
	case t.drained <- struct{}{}:
	default:
	}
}

// Shutdown stops accepting new messages, waits until every queued message
// has been written (or failed) — responses included, and those of the
// requests being handled or still arriving (a large request granted room)
// — and until the peers' kernels have taken in
// what was written, then closes the transport. Requests that arrive
// meanwhile are answered with ErrOverloaded ("shutting down"), so their
// callers can ask another node at once, and so are those waiting for
// inbound capacity as it begins (OverloadPause), with the one-way
// messages of their frames. What is queued for a peer that cannot be
// dialled, one-way messages too, fails at the next failed dial
// (ReasonConnectionReset, to OnDropped) rather than wait for the peer.
// Streams and file transfers that peers begin
// meanwhile are refused too (ErrOverloaded at their OpenStream and
// SendFile); those under way are not waited for, and the close cuts
// them off. Drained, it stops listening and closes its side of each
// inbound message connection, and reads on until the peer, which reads
// that as the connection's end, has closed its own (a few keepalive
// intervals at most): what a peer wrote before then — one-way messages
// it counted sent — is handled here, or counted dropped, not thrown away
// unread; what it had not written waits in its queue for this node's
// return, or fails there. A request that arrives on a connection whose
// side is closed is refused all the same, but its answer cannot go back:
// its call fails with ErrConnectionReset as the peer closes, though it
// did not run. Once those connections have ended, it waits for the
// one-way messages it read to be handled, as for the requests, so that
// Close does not drop them (ReasonClosed) unknown to their senders. If
// ctx ends first it closes at once, failing what is left, and returns
// ctx.Err() once Close has returned (which waits for the running
// handlers: see Close); if a Close
// (or another Shutdown's ctx ending) cuts it short — the drain, or the
// reading and handling that follow it — it returns ErrClosed once that
// Close has returned.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.closing.Store(true)
	t.drainOnce.Do(func() { close(t.draining) })
	t.refuseWaitingRequests()
	// Nothing signals a socket's send queue emptying: it is polled.
	poll := time.NewTicker(shutdownPoll)
	defer poll.Stop()
	var err error
drain:
	for !t.queuesEmpty() || !t.socketsSent() {
		select {
		case <-t.drained:
		case <-poll.C:
		case <-t.closed:
			// A Close, or another Shutdown giving up, came first and
			// failed what was left.
			err = ErrClosed
			break drain
		case <-ctx.Done():
			t.Close()
			return ctx.Err()
		}
	}
	if err == nil {
		err = t.finishInbound(ctx)
	}
	if err == nil {
		err = t.finishWork(ctx, poll.C)
	}
	if err == nil && chanClosed(t.closed) {
		err = ErrClosed // a Close came as it finished
	}
	if err == nil {
		t.drainedAll.Store(true)
	}
	t.Close() // returns once any Close under way has
	if errors.Is(err, ErrClosed) && t.drainedAll.Load() {
		return nil // another Shutdown had it all done
	}
	return err
}

// finishWork waits, once finishInbound has ended the inbound connections,
// for the messages they brought to be done with: the one-way messages
// queued for their handlers run, not dropped by Close as closed, which
// their senders, having counted them sent, would never hear of. With a
// connection still open (a peer that did not close its side in time) it
// does not wait: what that one brings would keep it waiting. A Close
// that cuts it short makes it return ErrClosed.
func (t *Transport) finishWork(ctx context.Context, poll <-chan time.Time) error {
	for t.working.Load() > 0 && !t.inboundOpen() {
		select {
		case <-t.drained: // the last message was done with (doneWork)
		case <-poll:
		case <-t.closed:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// finishInbound ends the inbound message connections gracefully, once
// Shutdown has drained: it closes this node's sending side of each (a
// TCP FIN, or TLS's close_notify), which its peer reads as the end of
// the back channel, closing the connection from its side in turn; and
// until it has, this node reads on. What the peer wrote before it saw the
// end — one-way messages it counted sent — is read and handled here (or
// counted dropped), not thrown away unread with the socket by Close. The
// listener closes first: a peer's redial is refused, and what it has
// queued waits there. It waits at most finishWait, or until ctx ends
// (ctx.Err()), for peers that do not close; Close cuts those off. A Close
// that cuts it short makes it return ErrClosed.
func (t *Transport) finishInbound(ctx context.Context) error {
	t.finishing.Store(true)
	t.closeListener()
	t.inboundMu.Lock()
	conns := slices.Collect(maps.Keys(t.inConns))
	t.inboundMu.Unlock()
	for _, ic := range conns {
		ic.closeBack()
	}
	bound := time.NewTimer(finishWait)
	defer bound.Stop()
	for t.inboundOpen() {
		select {
		case <-t.drained: // an inbound connection ended (trackInConn)
		case <-bound.C:
			return nil
		case <-t.closed:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// closeListener closes the listener, once: a second Close of an
// io.Closer is undefined, and Config.Listen's may be the application's.
func (t *Transport) closeListener() { t.lnOnce.Do(func() { t.ln.Close() }) }

// finishWait bounds finishInbound's wait for peers to close their side:
// one that has seen the end of its back channel closes at once; one that
// has not within a few keepalive intervals is cut off.
const finishWait = 3 * wire.KeepaliveInterval

// inboundOpen reports whether an inbound message connection that
// finishInbound waits for is still open: one whose sending side it
// closed, or one answered and about to be served (answered), whose side
// trackInConn closes. A connection whose side cannot be closed alone (a
// net.Conn without CloseWrite) is left to Close.
func (t *Transport) inboundOpen() bool {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	if t.answered > 0 {
		return true
	}
	for ic := range t.inConns {
		if ic.backClosed.Load() {
			return true
		}
	}
	return false
}

// refuseWaitingRequests answers "shutting down" the large requests that
// wait for inbound room as Shutdown begins (inConn.refuseWaiting). Those
// that begin later are refused as they begin (readLargeBegin).
func (t *Transport) refuseWaitingRequests() {
	t.limitsMu.Lock() // Close waits for the grants made here (see Close)
	defer t.limitsMu.Unlock()
	select {
	case <-t.closed: // Close fails them
		return
	default:
	}
	t.inboundMu.Lock()
	conns := slices.Collect(maps.Keys(t.inConns))
	t.inboundMu.Unlock()
	for _, ic := range conns {
		ic.refuseWaiting()
	}
}

// queuesEmpty reports whether nothing is left for Shutdown to wait for.
func (t *Transport) queuesEmpty() bool { return t.outboundEmpty() && t.inboundAnswered() }

// shutdownPoll is how often Shutdown looks again at the sockets' send
// queues.
const shutdownPoll = 5 * time.Millisecond

// socketsSent reports whether no live message connection, outbound or
// inbound, has bytes in its socket's send queue that the peer has not
// acknowledged (where the socket can be asked). A written message may
// still be there, and closing the socket does not always let it go out:
// a byte that arrives after the close (the peer's ping, a request) makes
// the kernel reset the connection and throw away what it had not sent.
func (t *Transport) socketsSent() bool {
	t.peersMu.RLock()
	for _, p := range t.peers {
		for i := range p.lanes {
			if c := p.lanes[i].Load(); c != nil {
				if lc := c.live.Load(); lc != nil && !lc.dead.Load() && !sendQueueEmpty(lc.probe) {
					t.peersMu.RUnlock()
					return false
				}
			}
		}
	}
	t.peersMu.RUnlock()
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	for ic := range t.inConns {
		select {
		case <-ic.done:
			continue
		default:
		}
		if !sendQueueEmpty(ic.probe) {
			return false
		}
	}
	return true
}

// sendQueueEmpty reports whether probe's socket has nothing left to send,
// or cannot say (no socket, or it is closed).
func sendQueueEmpty(probe *sockstat.Probe) bool {
	if probe == nil {
		return true
	}
	n, err := probe.SendQueue()
	return err != nil || n == 0
}

// outboundEmpty reports whether no lane holds a message.
func (t *Transport) outboundEmpty() bool {
	t.peersMu.RLock()
	defer t.peersMu.RUnlock()
	for _, p := range t.peers {
		for i := range p.lanes {
			if c := p.lanes[i].Load(); c != nil && c.queue.held() > 0 {
				return false
			}
		}
	}
	return true
}

// inboundAnswered reports whether no inbound connection has a request
// being handled or a response to write, or a frame that waits for
// inbound capacity (its wait ends as Shutdown begins, and its requests
// are answered: waitRoom).
func (t *Transport) inboundAnswered() bool {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	for ic := range t.inConns {
		if ic.answering.Load() > 0 || ic.waitingRoom.Load() || ic.repliesHeld() || ic.requestArriving() {
			return false
		}
	}
	return true
}

// Close closes the listener and every connection, fails every queued
// message and waiting request with ErrClosed, ends the contexts of the
// handlers still running (of messages, streams and file transfers), and
// waits for all of the transport's goroutines, those handlers included:
// a handler that does not return once its context ends holds Close until
// it does. Safe to call more than once. The metrics of messages and
// connections stay registered until the first collection after Close
// (an exporter's last: a MeterProvider's Shutdown, a final scrape) has
// reported their final figures, the messages Close failed included;
// with a provider that has no reader (the global one before the
// application sets one), Close unregisters them (see
// TelemetryConfig.MeterProvider).
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.stopWatch()
		close(t.closed)
		// A SetLimits under way, or Shutdown refusing the requests that
		// wait for room, calls the grants it made on its caller's
		// goroutine, which t.wg does not count: waited for here, while
		// the connections they are for still run. One that begins later
		// sees t.closed and does nothing.
		t.limitsMu.Lock()
		//lint:ignore SA2001 the wait for a SetLimits under way is the point
		t.limitsMu.Unlock()
		t.cancel()
		t.closeListener()
		t.inboundMu.Lock()
		for conn := range t.inbound {
			conn.Close()
		}
		t.inboundMu.Unlock()
		t.peersMu.Lock()
		peers := make([]*peer, 0, len(t.peers))
		for _, p := range t.peers {
			peers = append(peers, p)
		}
		t.peersMu.Unlock()
		for _, p := range peers {
			p.stop(ErrClosed)
		}
		t.calls.failPeer(nil, ErrClosed)
		t.wg.Wait()
		// Every message has its outcome now: the counters, final, stay
		// registered until a collection reports them
		// (registerObservables); the gauges of stages and health, which
		// describe a running node, go.
		t.tel.final.Store(true)
		switch {
		case t.tel.registration == nil:
		case !t.tel.collected.Load() && !t.tel.requestDuration.Enabled(context.Background()):
			// Nothing collects (no SDK behind the provider, as the
			// global one until the application sets one, or no
			// reader): nothing would unregister them. A provider
			// whose views drop request.duration reads so too until
			// its first collection.
			if t.tel.retired.CompareAndSwap(false, true) {
				_ = t.tel.registration.Unregister()
			}
		default:
			t.tel.awaitFinalCollection()
		}
		if t.tel.stages.registration != nil {
			_ = t.tel.stages.registration.Unregister()
		}
		if t.tel.health.registration != nil {
			_ = t.tel.health.registration.Unregister()
		}
		t.tel.leaveKernel()
	})
	return nil
}

// trackInbound registers an accepted connection so Close can close it; it
// reports false when the transport is already closing.
func (t *Transport) trackInbound(conn net.Conn, add bool) bool {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	if !add {
		delete(t.inbound, conn)
		return true
	}
	select {
	case <-t.closed:
		return false
	default:
	}
	t.inbound[conn] = struct{}{}
	return true
}

// trackInConn registers a handshaken inbound connection so SetLimits and
// Stats can reach it; it reports false when the transport is closing.
func (t *Transport) trackInConn(ic *inConn, add bool) bool {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	if !add {
		delete(t.inConns, ic)
		t.signalDrained() // its responses, if any, ended with it
		return true
	}
	select {
	case <-t.closed:
		return false
	default:
	}
	t.inConns[ic] = struct{}{}
	ic.setLimits() // made before a SetLimits that has looked at inConns
	if t.finishing.Load() {
		// Accepted just before the listener closed: finishInbound
		// waits for it too.
		ic.closeBack()
	}
	return true
}

// SetCoalescing replaces every connection's coalescing strategy with a new
// one from factory, now and for connections opened later. nil restores
// DefaultCoalescing, and a nil strategy for a lane that lane's default.
// Each connection's statistics restart with its new strategy.
func (t *Transport) SetCoalescing(factory func(routing.Lane) coalescing.Strategy) {
	if factory == nil {
		factory = DefaultCoalescing
	}
	// Stored before the peers are listed, so that no lane created
	// meanwhile misses it: a lane is made under its peer's mu with the
	// factory stored then (newOutConn). Not under peersMu, which the
	// factory, user code, may need (Stats), and which a writer waiting
	// for it (peerFor) keeps a new reader from taking.
	t.coalescing.Store(&factory)
	t.peersMu.RLock()
	peers := slices.Collect(maps.Values(t.peers))
	t.peersMu.RUnlock()
	for _, p := range peers {
		p.mu.Lock()
		var strategies [routing.NumLanes]coalescing.Strategy
		for i := range p.lanes {
			if c := p.lanes[i].Load(); c != nil {
				strategies[i] = newStrategy(factory, c.lane) // user code: not under coalMu
			}
		}
		p.coalMu.Lock()
		for i := range p.lanes {
			if c := p.lanes[i].Load(); c != nil {
				c.setStrategy(strategies[i])
			}
		}
		p.retiredCoalescing = [routing.NumLanes]coalescing.Stats{} // the statistics restart
		p.coalMu.Unlock()
		p.mu.Unlock()
	}
}

// SetLimits changes the outbound and inbound limits of every connection,
// peer and the node, at once. Lowering a limit below what is in use frees
// nothing: new messages wait or fail until enough is given back. That
// includes the room open stream sessions hold: a stream connection is
// refused when it would leave less than the largest message's room, but
// one accepted before the limits were lowered keeps its room, and a large
// message from that peer that no longer fits beside it waits, first in
// line at the peer, until a session closes. Both sets are whole: a zero
// field takes its default, as in Config, not the value in force, so a
// caller changing one limit passes the others it configured too. Once
// Close has begun it changes nothing and returns ErrClosed.
func (t *Transport) SetLimits(outbound, inbound Limits) error {
	outbound.setDefaults()
	inbound.setDefaults()
	if err := errors.Join(outbound.validate("outbound", t.cfg.Memory.MaxMessageSize),
		inbound.validate("inbound", t.cfg.Memory.MaxMessageSize)); err != nil {
		return err
	}
	t.limitsMu.Lock()
	defer t.limitsMu.Unlock()
	select {
	case <-t.closed: // Close waits for no grant made from here on
		return ErrClosed
	default:
	}
	// Stored before the scans, each under the lock that what it scans is
	// made or published under, so that nothing made meanwhile misses them:
	// peers under peersMu, lanes under their peer's mu, inbound
	// connections under inboundMu (trackInConn sets their limits).
	t.limitsOut.Store(&outbound)
	t.limitsIn.Store(&inbound)
	t.outBudget.Root().SetLimitAndReserve(outbound.Node, responseReserve(outbound.Node, t.cfg.Memory.MaxMessageSize))
	t.inBudget.Root().SetLimit(inbound.Node)
	// The peers are listed under peersMu, and their mus taken after it is
	// let go, as in SetCoalescing: a peer's mu is held while the
	// coalescing factory, user code, runs (peer.lane), and a factory that
	// reads Stats waits for peersMu behind any writer waiting for it (a
	// Leave, the janitor), which would wait for this read lock.
	t.peersMu.RLock()
	peers := slices.Collect(maps.Values(t.peers))
	t.peersMu.RUnlock()
	for _, p := range peers {
		p.outAccount.SetLimitAndReserve(outbound.PerPeer, responseReserve(outbound.PerPeer, t.cfg.Memory.MaxMessageSize))
		p.inAccount.SetLimit(inbound.PerPeer)
		p.mu.Lock()
		for i := range p.lanes {
			if c := p.lanes[i].Load(); c != nil {
				c.account.SetLimit(outbound.forSends(c.lane, t.cfg.Memory.MaxMessageSize))
			}
		}
		p.mu.Unlock()
	}
	t.inboundMu.Lock()
	for ic := range t.inConns {
		ic.setLimits()
	}
	t.inboundMu.Unlock()
	return nil
}
