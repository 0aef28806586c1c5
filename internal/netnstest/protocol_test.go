package netnstest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/internode/internode/transport"
)

// The test process drives each node process with one command per line on the
// node's stdin; the node answers each with exactly one line on its stdout:
// answerPrefix followed by an answer in JSON. Lines without the prefix (the
// testing package's "PASS", a stray print) are not answers.
//
// Commands (durations in time.ParseDuration syntax):
//
//	members                               → []string, sorted node IDs
//	request <peer> <count> <timeout>      → callsResult, sequential requests
//	send <peer> <count> <timeout> <tag> [size]
//	                                      → callsResult, one-way messages
//	start <name> request <peer> <count> <timeout>
//	                                      → "started": the requests run in
//	                                        the background
//	repeat <name> request <peer> <every> <for> <timeout> <size>
//	repeat <name> send <peer> <every> <for> <timeout> <size> <tag>
//	                                      → "started": one call begins
//	                                        every <every> for <for>, each on
//	                                        its own goroutine; wait returns
//	                                        the callsResult with its Log
//	wait <name>                           → callsResult of a started run,
//	                                        once its last call returned
//	stats <peer>                          → statsResult
//	received                              → map[string]uint64, by tag
//	arrivals                              → map[string]arrival, by tag
//	events <peer>                         → []memberEvent
//	contacts <peer>                       → []contact: what memberlist
//	                                        heard of peer, oldest first
//	counters                              → linkCounters of the node's
//	                                        interface, now
//	exchange <peer> <count> <inflight> <size> <timeout>
//	                                      → exchangeResult: count echo
//	                                        requests of size bytes, at most
//	                                        inflight at a time
//	rawserve                              → string: the address of a plain
//	                                        TCP echo server, started once
//	rawecho <addr> <count> <inflight> <size> <timeout>
//	                                      → exchangeResult: the same over
//	                                        plain TCP, one connection per
//	                                        exchange in flight
//	quit                                  → "bye", then the process exits
const answerPrefix = "netnstest-answer: "

// Environment of a node process; a process without envNode is not a node.
const (
	envNode = "INTERNODE_NETNS_NODE" // the node's ID
	envIP   = "INTERNODE_NETNS_IP"   // the node's address in its namespace
	envSeed = "INTERNODE_NETNS_SEED" // gossip address to join through; empty for the first node
	// envReconnect is memberlist's ReconnectInterval, in
	// time.ParseDuration syntax; unset keeps its default.
	envReconnect = "INTERNODE_NETNS_RECONNECT"
	// envSuspicion is memberlist's SuspicionMult; unset keeps the lab's.
	envSuspicion = "INTERNODE_NETNS_SUSPICION"
)

// Fixed ports: each node has its namespace, so they never collide.
const (
	transportPort = 7000
	gossipPort    = 7946
	clusterName   = "netnstest"
)

// Verbs the nodes serve.
const (
	verbEcho  transport.Verb = 1 // request: the response is the payload
	verbCount transport.Verb = 2 // one-way: counted by tag (the payload up to '/')
)

// answer is one line of a node's output after answerPrefix.
type answer struct {
	Err    string          `json:"err,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// readyResult is the line a node prints, unasked, once it serves.
type readyResult struct {
	TransportAddr string
	GossipAddr    string
}

// callsResult reports a run of requests or one-way sends, made one after
// another.
type callsResult struct {
	Started  time.Time // when the first call began
	Attempts int
	// OK counts requests answered with their payload, or sends accepted.
	OK int
	// Failed counts requests that failed, or sends refused.
	Failed int
	// ByClass counts failures by failureClass.
	ByClass map[string]int
	// Errors holds the distinct error messages, at most maxErrors.
	Errors []string
	// NetTimeouts counts failures whose error is a net.Error with
	// Timeout() true.
	NetTimeouts int
	// MaxOK and MaxFailed are the longest single successful and failed
	// calls; Durations lists every call in order.
	MaxOK, MaxFailed time.Duration
	Durations        []time.Duration
	// Log lists every call in the order they began; only repeat fills
	// it. Its times are wall clock: all node processes share the
	// machine's clock, so the test can set them against its own.
	Log []callRecord `json:",omitempty"`
}

// callRecord is one call of a repeat run.
type callRecord struct {
	Start time.Time     `json:"s"`
	Took  time.Duration `json:"d"`
	Class string        `json:"c,omitempty"` // failureClass; empty if the call succeeded
}

// End is when the call returned.
func (c callRecord) End() time.Time { return c.Start.Add(c.Took) }

// sortLog puts Log in the order the calls began, and Started at the first.
func (r *callsResult) sortLog() {
	slices.SortFunc(r.Log, func(a, b callRecord) int { return a.Start.Compare(b.Start) })
	if len(r.Log) > 0 {
		r.Started = r.Log[0].Start
	}
}

const maxErrors = 10

// record adds one call's outcome.
func (r *callsResult) record(start time.Time, took time.Duration, err error) {
	if r.Attempts == 0 {
		r.Started = start
	}
	r.Attempts++
	r.Durations = append(r.Durations, took)
	if err == nil {
		r.OK++
		r.MaxOK = max(r.MaxOK, took)
		return
	}
	r.Failed++
	r.MaxFailed = max(r.MaxFailed, took)
	if r.ByClass == nil {
		r.ByClass = make(map[string]int)
	}
	r.ByClass[failureClass(err)]++
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		r.NetTimeouts++
	}
	msg := err.Error()
	for _, seen := range r.Errors {
		if seen == msg {
			return
		}
	}
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, msg)
	}
}

// Failure classes, from the transport's documented errors.
const (
	classPeerLeft        = "peer-left"
	classUnknownPeer     = "unknown-peer"
	classConnectionReset = "connection-reset"
	classDeadline        = "deadline"
	classExpired         = "expired"
	classOverloaded      = "overloaded"
	classRefused         = "refused"
	classClosed          = "closed"
	classWrongPayload    = "wrong-payload"
	classOther           = "other"
)

// errWrongPayload fails an echo request whose response is not its payload.
var errWrongPayload = errors.New("netnstest: echo returned another payload")

// failureClass names the sentinel an error matches. The order matters: a
// request that expired in its queue matches both ErrExpired and
// context.DeadlineExceeded and is classed as expired.
func failureClass(err error) string {
	switch {
	case errors.Is(err, transport.ErrPeerLeft):
		return classPeerLeft
	case errors.Is(err, transport.ErrUnknownPeer):
		return classUnknownPeer
	case errors.Is(err, transport.ErrConnectionReset):
		return classConnectionReset
	case errors.Is(err, transport.ErrExpired):
		return classExpired
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadline
	case errors.Is(err, transport.ErrOverloaded):
		return classOverloaded
	case errors.Is(err, transport.ErrRefused):
		return classRefused
	case errors.Is(err, transport.ErrClosed):
		return classClosed
	case errors.Is(err, errWrongPayload):
		return classWrongPayload
	}
	return classOther
}

// statsResult is what a node's transport says about one peer, lane by
// lane, with the node's own tally of Config.OnDropped calls beside it.
type statsResult struct {
	// Present reports whether Transport.Stats lists the peer at all.
	Present bool
	// Lanes is keyed by lane name; a lane appears once Stats lists it or
	// OnDropped reported one of its messages.
	Lanes map[string]laneStats
	// NodeDropped is Stats().Total().Dropped, every peer's, by reason.
	NodeDropped map[string]uint64
}

// laneStats is one lane with one peer. Maps hold non-zero counts only,
// keyed by transport.Reason's String.
type laneStats struct {
	Sent            uint64 // ConnStats.MessagesSent
	Dropped         map[string]uint64
	Pending         uint64 // ConnStats.PendingMessages
	PendingBytes    uint64
	Received        uint64 // ConnStats.MessagesReceived
	DroppedInbound  map[string]uint64
	Connects        uint64
	ConnectFailures uint64
	Connected       bool
	// HookDropped counts OnDropped calls; the node keeps this tally
	// itself, so it survives the peer leaving.
	HookDropped map[string]uint64
}

// lane returns the named lane's figures, zero if absent.
func (s statsResult) lane(name string) laneStats { return s.Lanes[name] }

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// memberEvent is one membership change as the node's transport saw it:
// when memberlist's dispatcher handed it over (wall clock; all node
// processes share the machine's clock) and how long the transport's
// watcher took to return.
type memberEvent struct {
	Type string
	Addr string
	At   time.Time
	Took time.Duration
}

// arrival is what a node received of one tag of one-way messages: how
// many, and when the first and the last reached the handler (wall clock).
type arrival struct {
	Count       uint64
	First, Last time.Time
}

// contact is one sign that memberlist reached a member: a probe of it
// answered, or an alive message about it (its own, or relayed; alive
// messages also arrive for members memberlist already knows alive, with
// every push/pull).
type contact struct {
	At   time.Time // wall clock
	Kind string    // contactAck or contactAlive
}

const (
	contactAck   = "ack"
	contactAlive = "alive"
)

// linkCounters are the kernel's counters of a node's interface
// (/sys/class/net/<link>/statistics) at one moment, wall clock.
type linkCounters struct {
	At                   time.Time
	TxPackets, RxPackets uint64
	TxBytes, RxBytes     uint64
}

// exchangeResult reports a run of request/response exchanges with the
// node's interface counters read just before the first exchange began and
// just after the last one ended, so that the counters cover the run and
// little else.
type exchangeResult struct {
	Calls         callsResult
	Before, After linkCounters
}
