package transport

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// LaneState is where one outbound lane to a peer stands.
type LaneState uint8

const (
	// LaneIdle: no connection and none wanted now — the lane was never
	// dialled, or its connection was closed (idle for Timeouts.Idle, lost
	// or failed with nothing left to send). A message to send dials it.
	LaneIdle LaneState = iota
	// LaneDialing: a dial or handshake is in progress, or the connection
	// is established and its peer not heard on it yet (the acceptor beats
	// right behind its handshake reply: a live peer is heard at once).
	LaneDialing
	// LaneConnected: the lane has an established connection, on which
	// its peer was heard.
	LaneConnected
	// LaneBackoff: the last attempt failed and messages wait; the next
	// attempt starts at LaneHealth.RetryAt, or sooner when the peer is
	// seen again (it connects to this node, or the membership updates it).
	LaneBackoff
)

var laneStateNames = [...]string{"idle", "dialing", "connected", "backoff"}

func (s LaneState) String() string {
	if int(s) < len(laneStateNames) {
		return laneStateNames[s]
	}
	return "LaneState(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the state's name (for JSON).
func (s LaneState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// PeerStatus is what this node knows of whether it can reach a peer.
type PeerStatus uint8

const (
	// PeerUnknown: this node has not reached the peer yet: no lane was
	// dialled (the lanes open on first use), or the first dials are still
	// under way, or their connections have not heard the peer yet. A
	// database that needs to know sends the peer something — its own
	// heartbeat — and asks again.
	PeerUnknown PeerStatus = iota
	// PeerUp: a lane is connected, or the last connections ended cleanly
	// (closed for being idle) with the peer heard on the lane, and no lane
	// is failing.
	PeerUp
	// PeerDown: a lane is failing — its last dial failed, or its
	// connection was lost and has not been replaced since. A lane left
	// idle by the loss (nothing to send) is not failing once another
	// connection of this node's to the peer, on any lane, has heard it
	// since: a peer back from a restart is up, though a lane it used
	// before waits for something to send to connect again. Nothing but a
	// message this node sends dials a peer again, and the peer's own
	// connections to this node do not count: a peer that came back while
	// this node sent it nothing stays down until it does. A database that
	// waits for a peer to be up (to replay hints, say) sends it something
	// — its own heartbeat — and asks again.
	PeerDown
)

var peerStatusNames = [...]string{"unknown", "up", "down"}

func (s PeerStatus) String() string {
	if int(s) < len(peerStatusNames) {
		return peerStatusNames[s]
	}
	return "PeerStatus(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the status's name (for JSON).
func (s PeerStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LaneHealth is the state of one outbound lane to a peer and what was last
// heard on it. Times are zero when the event never happened.
type LaneHealth struct {
	Lane  routing.Lane `json:"lane"`
	State LaneState    `json:"state"`
	// Since is when State began; zero for a lane never dialled.
	Since time.Time `json:"since,omitzero"`
	// RetryAt is when the next attempt starts, in LaneBackoff.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// LastWrite is when the last write on the lane's connection completed
	// (messages or a keepalive ping).
	LastWrite time.Time `json:"last_write,omitzero"`
	// LastRead is when the last frame from the peer was read on this
	// lane: a beat or response on this node's connection, or a frame on
	// the peer's own connection of the same lane to this node.
	LastRead time.Time `json:"last_read,omitzero"`
	// ConsecutiveFailures counts the failed dials and lost connections
	// since the lane last connected; a connection on which the peer is
	// heard resets it (a peer that takes the handshake and says nothing
	// does not).
	ConsecutiveFailures uint32 `json:"consecutive_failures"`
	// LastError describes the last failure and LastErrorAt says when; both
	// are kept after the lane recovers.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Inbound says the peer's own connection of this lane to this node is
	// open now.
	Inbound bool `json:"inbound"`
}

// MarshalJSON writes the lane by name, and leaves out the times of
// events that never happened.
func (l LaneHealth) MarshalJSON() ([]byte, error) {
	type plain LaneHealth
	return json.Marshal(struct {
		Lane string `json:"lane"`
		plain
	}{l.Lane.String(), plain(l)})
}

// failing reports whether the lane's last attempt failed or its
// connection was lost and not yet replaced.
func (l *LaneHealth) failing() bool {
	return l.ConsecutiveFailures > 0 && l.State != LaneConnected
}

// PeerHealth is one peer's lanes and status.
type PeerHealth struct {
	Peer   cluster.NodeID `json:"peer"`
	Addr   string         `json:"addr"`
	Status PeerStatus     `json:"status"`
	// Lanes is indexed by routing.Lane: urgent, small, large.
	Lanes [routing.NumLanes]LaneHealth `json:"lanes"`
	// StreamSession says this node's stream session (OpenStream) to the
	// peer is open; StreamsOut and StreamsIn count the streams open each
	// way, and closed ones whose close still waits for a congested
	// session. Streams and file transfers dial on demand and report their
	// failures to their caller (OpenStream, SendFile): they do not count
	// in Status.
	StreamSession bool  `json:"stream_session"`
	StreamsOut    int32 `json:"streams_out"`
	StreamsIn     int32 `json:"streams_in"`
}

// statusOf derives a peer's status from its lanes: down when any lane is
// failing, up when any lane connected or ended cleanly, unknown when none
// was ever dialled. A lane dialling again after its connection ended
// cleanly (closed for being idle: the peer was heard on the lane, and
// nothing failed since) is still up: only a dial to a peer never heard
// says nothing of it yet, and a lane that turned unknown at every redial
// would take a quiet node out of ReadyAll each time. (A peer that takes
// the handshake and says nothing is never heard: it stays unknown, then
// down.) So is a lane idle again without having heard the peer: a
// connection to it closed for being idle before the keepalive check
// found it silent (Timeouts.Idle shorter than Timeouts.Keepalive, or the
// checks off) ended without a failure, but says nothing of the peer.
//
// reached is when a connection of this node's to the peer, on any lane,
// last heard it for the first time. A lane whose connection was lost with
// nothing left to send stays idle, its failure on record, until something
// is sent on it: a connection reached after that failure is over too, or
// a peer back from a restart would stay down for as long as nothing went
// on that lane. (Only this node's connections count: the peer's own to
// this node say it can reach this node, not that this node can reach it.)
func statusOf(lanes []LaneHealth, reached time.Time) PeerStatus {
	status := PeerUnknown
	for i := range lanes {
		switch l := &lanes[i]; {
		case l.failing() && l.State == LaneIdle && reached.After(l.LastErrorAt):
			status = PeerUp
		case l.failing():
			return PeerDown
		case l.State == LaneConnected,
			!l.Since.IsZero() && l.ConsecutiveFailures == 0 && !l.LastRead.IsZero():
			status = PeerUp
		}
	}
	return status
}

// Health is a snapshot of whether this node can talk to its peers, from
// (*Transport).Health. Each field was read atomically, but fields may
// have been read moments apart.
type Health struct {
	Node cluster.NodeID `json:"node"`
	At   time.Time      `json:"at"`
	// Closed says the transport was closed, or is shutting down (its
	// Shutdown has begun, and it refuses new messages): it is never
	// ready, so that a load balancer's probe turns away from it as it
	// begins to drain.
	Closed bool `json:"closed"`
	// Members counts the membership's members and this node (whether or
	// not the membership lists it): len(Peers) + 1.
	Members int `json:"members"`
	// Up, Down and Unknown count Peers by status.
	Up      int `json:"up"`
	Down    int `json:"down"`
	Unknown int `json:"unknown"`
	// Peers lists every member but this node, sorted by ID.
	Peers []PeerHealth `json:"peers"`
}

// ReadyRule says how many peers Health.Ready wants up.
type ReadyRule uint8

const (
	// ReadyAll wants every peer up: no member down or unknown.
	ReadyAll ReadyRule = iota
	// ReadyQuorum wants a majority of the members, this node included,
	// up: this node plus its up peers make more than half of Members.
	// It suits a node whose work needs a quorum (a Raft or Paxos
	// replica).
	ReadyQuorum
)

var readyRuleNames = [...]string{"all", "quorum"}

func (r ReadyRule) String() string {
	if int(r) < len(readyRuleNames) {
		return readyRuleNames[r]
	}
	return "ReadyRule(" + strconv.Itoa(int(r)) + ")"
}

// Ready applies rule to the snapshot. A closed transport, or one shutting
// down, is never ready; a node without peers is.
func (h *Health) Ready(rule ReadyRule) bool {
	if h.Closed {
		return false
	}
	switch rule {
	case ReadyAll:
		return h.Down == 0 && h.Unknown == 0
	case ReadyQuorum:
		return 2*(h.Up+1) > h.Members
	}
	return false
}

// Peer returns the health of peer id, if it is a member.
func (h *Health) Peer(id cluster.NodeID) (PeerHealth, bool) {
	i, ok := slices.BinarySearchFunc(h.Peers, id, func(p PeerHealth, id cluster.NodeID) int {
		return strings.Compare(string(p.Peer), string(id))
	})
	if !ok {
		return PeerHealth{}, false
	}
	return h.Peers[i], true
}

// Health reports, for every member of the cluster, the state of each
// outbound lane to it and what was last written and read there, and
// whether it is up. It reads counters the writers and readers keep with
// atomic stores, so it is cheap enough to call on every probe of a load
// balancer. Safe for concurrent use.
func (t *Transport) Health() Health {
	h := Health{Node: t.cfg.NodeID, At: time.Now(), Closed: t.closing.Load(), Members: 1}
	for _, m := range t.cfg.Membership.Members() {
		if m.ID == t.cfg.NodeID {
			continue
		}
		ph := PeerHealth{Peer: m.ID, Addr: m.Addr}
		var reached time.Time
		if p := t.peerStats(m.ID); p != nil {
			reached = p.healthInto(&ph)
		} else {
			for i := range ph.Lanes {
				ph.Lanes[i].Lane = routing.Lane(i)
			}
		}
		ph.Status = statusOf(ph.Lanes[:], reached)
		switch ph.Status {
		case PeerUp:
			h.Up++
		case PeerDown:
			h.Down++
		default:
			h.Unknown++
		}
		h.Peers = append(h.Peers, ph)
		h.Members++
	}
	slices.SortFunc(h.Peers, func(a, b PeerHealth) int { return strings.Compare(string(a.Peer), string(b.Peer)) })
	return h
}

// Ready reports whether this node can reach its peers by rule: a shortcut
// for Health().Ready(rule).
func (t *Transport) Ready(rule ReadyRule) bool {
	h := t.Health()
	return h.Ready(rule)
}

// healthInto fills ph's lanes and streams from the peer's records, and
// returns when a connection of this node's to the peer last heard it first
// (statusOf's reached).
func (p *peer) healthInto(ph *PeerHealth) (reached time.Time) {
	p.t.inboundMu.Lock()
	inbound := p.inConns
	p.t.inboundMu.Unlock()
	var reachedNs int64
	for i := range ph.Lanes {
		reachedNs = max(reachedNs, p.health[i].answeredAt.Load())
		ph.Lanes[i] = p.health[i].snapshot(routing.Lane(i))
		ph.Lanes[i].Inbound = inbound[i] > 0
	}
	s := p.streams.session.Load()
	ph.StreamSession = s != nil && !s.IsClosed()
	ph.StreamsOut, ph.StreamsIn = p.streams.out.Load(), p.streams.in.Load()
	return unixTime(reachedNs)
}

// laneHealth is what a lane's writer, its back-channel reader and the
// reader of the peer's connection of the same lane record for Health:
// atomic stores of times they already read, kept by the peer so that they
// outlive the lane's connections. The writer is the only one to change
// the state, the failures and the error.
type laneHealth struct {
	// mu orders the changes of state and failures: the writer's, and
	// the back-channel reader's answered.
	mu        sync.Mutex
	state     atomic.Uint32 // LaneState
	since     atomic.Int64  // Unix ns
	retryAt   atomic.Int64
	lastWrite atomic.Int64
	lastRead  atomic.Int64
	// answeredAt is when a connection of the lane last heard its peer
	// first (answered), Unix ns.
	answeredAt atomic.Int64
	failures   atomic.Uint32
	lastError  atomic.Pointer[healthError]
}

type healthError struct {
	text string
	at   int64
}

func (h *laneHealth) set(s LaneState, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setLocked(s, now)
}

func (h *laneHealth) setLocked(s LaneState, now time.Time) {
	h.since.Store(now.UnixNano())
	h.state.Store(uint32(s))
}

// dialing records a dial begun at now.
func (h *laneHealth) dialing(now time.Time) { h.set(LaneDialing, now) }

// handshaken records a connection established at now, whose peer is yet
// to be heard: the lane stays dialing, and its failures count on, until
// answered. (A peer that takes the handshake and says nothing is not up.)
func (h *laneHealth) handshaken(now time.Time) { h.set(LaneDialing, now) }

// answered records that the peer was heard, at now (Unix ns), on the
// connection handshaken last: the lane is connected and its failures
// are over. A connection lost meanwhile moved the state on; it stays.
func (h *laneHealth) answered(now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if LaneState(h.state.Load()) == LaneDialing {
		h.failures.Store(0)
		h.answeredAt.Store(now)
		h.setLocked(LaneConnected, time.Unix(0, now))
	}
}

// failed records a failed dial or a lost connection, and why: the why
// first, so that a snapshot, which reads the count first, never sees a
// failure without its error.
func (h *laneHealth) failed(why string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastError.Store(&healthError{text: why, at: now.UnixNano()})
	h.failures.Add(1)
}

// backoff records the wait before the next attempt.
func (h *laneHealth) backoff(now time.Time, wait time.Duration) {
	h.retryAt.Store(now.Add(wait).UnixNano())
	h.set(LaneBackoff, now)
}

// idle records that the lane holds no connection and wants none.
func (h *laneHealth) idle(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if LaneState(h.state.Load()) != LaneIdle {
		h.setLocked(LaneIdle, now)
	}
}

func (h *laneHealth) wrote(at time.Time)  { h.lastWrite.Store(at.UnixNano()) }
func (h *laneHealth) read(unixNano int64) { h.lastRead.Store(unixNano) }

func (h *laneHealth) snapshot(lane routing.Lane) LaneHealth {
	l := LaneHealth{
		Lane:                lane,
		State:               LaneState(h.state.Load()),
		Since:               unixTime(h.since.Load()),
		LastWrite:           unixTime(h.lastWrite.Load()),
		LastRead:            unixTime(h.lastRead.Load()),
		ConsecutiveFailures: h.failures.Load(), // before lastError: see failed
	}
	if l.State == LaneBackoff {
		l.RetryAt = unixTime(h.retryAt.Load())
	}
	if e := h.lastError.Load(); e != nil {
		l.LastError, l.LastErrorAt = e.text, unixTime(e.at)
	}
	return l
}

// unixTime is the time of Unix ns, or the zero time for 0.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// healthInstruments are the health metrics, observed from Health.
type healthInstruments struct {
	registration                           metric.Registration
	connected, failures, peerStatus, ready metric.Int64ObservableGauge
	sinceWrite, sinceRead, retryIn         metric.Float64ObservableGauge
}

func (hi *healthInstruments) register(m metric.Meter, t *Transport) error {
	return hi.registerFrom(m, t.Health)
}

// registerFrom registers the instruments, observed from what health
// returns at each collection.
func (hi *healthInstruments) registerFrom(m metric.Meter, health func() Health) error {
	set := observableSet{m: m}
	gauge, seconds := set.gauge, set.seconds
	hi.connected = gauge("internode.peer.connected", "1 when the lane to the peer has an established connection on which the peer was heard, else 0", "")
	hi.failures = gauge("internode.peer.consecutive_failures", "Failed dials and lost connections on the lane since it last connected", "{failure}")
	hi.peerStatus = gauge("internode.peer.status", "1 for the peer's current status (up, down, unknown), 0 for the others", "")
	hi.ready = gauge("internode.node.ready", "1 when the node is ready by the rule (all: every peer up; quorum: a majority up), else 0", "")
	hi.sinceWrite = seconds("internode.peer.since_last_write", "Seconds since the last completed write on the lane (absent if none)")
	hi.sinceRead = seconds("internode.peer.since_last_read", "Seconds since the last frame read from the peer on the lane (absent if none)")
	hi.retryIn = seconds("internode.peer.retry_in", "Seconds until the lane's next connection attempt, while it backs off")
	if err := set.err(); err != nil {
		return err
	}
	var err error
	hi.registration, err = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		h := health()
		hi.observe(obs, &h)
		return nil
	}, hi.connected, hi.failures, hi.peerStatus, hi.ready, hi.sinceWrite, hi.sinceRead, hi.retryIn)
	return err
}

// observe reports h.
func (hi *healthInstruments) observe(obs metric.Observer, h *Health) {
	for i := range h.Peers {
		p := &h.Peers[i]
		peerAttr := attribute.String("peer", string(p.Peer))
		for s := range PeerStatus(len(peerStatusNames)) {
			obs.ObserveInt64(hi.peerStatus, boolInt(p.Status == s),
				metric.WithAttributes(peerAttr, attribute.String("status", s.String())))
		}
		for j := range p.Lanes {
			l := &p.Lanes[j]
			attrs := metric.WithAttributes(peerAttr, attribute.String("lane", l.Lane.String()))
			obs.ObserveInt64(hi.connected, boolInt(l.State == LaneConnected), attrs)
			obs.ObserveInt64(hi.failures, int64(l.ConsecutiveFailures), attrs)
			if !l.LastWrite.IsZero() {
				obs.ObserveFloat64(hi.sinceWrite, max(h.At.Sub(l.LastWrite).Seconds(), 0), attrs)
			}
			if !l.LastRead.IsZero() {
				obs.ObserveFloat64(hi.sinceRead, max(h.At.Sub(l.LastRead).Seconds(), 0), attrs)
			}
			if l.State == LaneBackoff {
				obs.ObserveFloat64(hi.retryIn, max(l.RetryAt.Sub(h.At).Seconds(), 0), attrs)
			}
		}
	}
	for r := range ReadyRule(len(readyRuleNames)) {
		obs.ObserveInt64(hi.ready, boolInt(h.Ready(r)), metric.WithAttributes(attribute.String("rule", r.String())))
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
