package netnstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/cluster/memberlist"
	"github.com/internode/internode/transport"
)

// TestHelperNode is one node of a TestNetns test, run in its own network
// namespace by re-executing the test binary. Without envNode it returns at
// once: in an ordinary test run it is not a test.
func TestHelperNode(t *testing.T) {
	id := os.Getenv(envNode)
	if id == "" {
		return
	}
	cfg := nodeConfig{ID: cluster.NodeID(id), IP: os.Getenv(envIP)}
	if seed := os.Getenv(envSeed); seed != "" {
		cfg.Seeds = []string{seed}
	}
	if interval := os.Getenv(envReconnect); interval != "" {
		var err error
		if cfg.ReconnectInterval, err = time.ParseDuration(interval); err != nil {
			t.Fatalf("%s: %v", envReconnect, err)
		}
	}
	if mult := os.Getenv(envSuspicion); mult != "" {
		var err error
		if cfg.SuspicionMult, err = strconv.Atoi(mult); err != nil || cfg.SuspicionMult < 1 {
			t.Fatalf("%s: bad multiplier %q", envSuspicion, mult)
		}
	}
	if err := runNode(cfg, os.Stdin, os.Stdout); err != nil {
		t.Fatalf("node %s: %v", id, err)
	}
}

type nodeConfig struct {
	ID                cluster.NodeID
	IP                string
	Seeds             []string
	ReconnectInterval time.Duration // memberlist's; 0 keeps its default
	SuspicionMult     int           // memberlist's; 0 keeps fastFailureDetection's
}

// gossipProbeInterval is how often memberlist probes a member, here.
const gossipProbeInterval = 200 * time.Millisecond

// fastFailureDetection declares a silent member dead in about a second:
// probe every 200 ms with a 100 ms timeout, then a suspicion of
// SuspicionMult x ProbeInterval = 400 ms (with three members memberlist
// awaits no confirmation). Gossip every 50 ms spreads the news quickly.
func fastFailureDetection(c *ml.Config) {
	c.ProbeInterval = gossipProbeInterval
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = time.Second
}

// node is the state of one node process.
type node struct {
	id      cluster.NodeID
	ip      string
	members *memberlist.Membership
	tr      *transport.Transport

	background sync.WaitGroup // runs begun by start and repeat
	mu         sync.Mutex
	arrivals   map[string]arrival // one-way messages by tag
	// hookDropped counts OnDropped calls by peer, lane name and reason.
	hookDropped map[cluster.NodeID]map[string]*[transport.NumReasons]uint64
	events      map[cluster.NodeID][]memberEvent
	contacts    map[string][]contact        // what memberlist heard of each member, by its name
	runs        map[string]chan callsResult // by run name; one slot each
	rawEcho     *rawEchoServer              // started by rawserve; closed as the node exits
}

// timedMembership hands the transport the real Membership, timing each
// event the transport's watcher handles: when it was handed over and how
// long the watcher took, which is as long as memberlist's event delivery
// waits for it.
type timedMembership struct {
	*memberlist.Membership
	n *node
}

var _ cluster.Membership = timedMembership{}

func (m timedMembership) Watch(fn func(cluster.Event)) (stop func()) {
	return m.Membership.Watch(func(ev cluster.Event) {
		at := time.Now()
		fn(ev)
		m.n.recordEvent(ev, at, time.Since(at))
	})
}

// contactRecorder is memberlist's PingDelegate and AliveDelegate: it notes
// when a probe of a member was answered and when an alive message about
// it arrived, which tells when memberlist reaches a member again after a
// partition even if it never declared it dead (a suspected member causes
// no membership event). It filters nothing.
type contactRecorder struct{ n *node }

var (
	_ ml.PingDelegate  = contactRecorder{}
	_ ml.AliveDelegate = contactRecorder{}
)

func (contactRecorder) AckPayload() []byte { return nil }

func (r contactRecorder) NotifyPingComplete(other *ml.Node, _ time.Duration, _ []byte) {
	r.record(other.Name, contactAck)
}

func (r contactRecorder) NotifyAlive(peer *ml.Node) error {
	r.record(peer.Name, contactAlive)
	return nil
}

func (r contactRecorder) record(member, kind string) {
	now := time.Now()
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	r.n.contacts[member] = append(r.n.contacts[member], contact{At: now, Kind: kind})
}

// runNode starts the node, prints readyResult, serves commands from in
// until quit, then shuts down.
func runNode(cfg nodeConfig, in io.Reader, out io.Writer) (err error) {
	n := &node{
		id:          cfg.ID,
		ip:          cfg.IP,
		arrivals:    make(map[string]arrival),
		hookDropped: make(map[cluster.NodeID]map[string]*[transport.NumReasons]uint64),
		events:      make(map[cluster.NodeID][]memberEvent),
		contacts:    make(map[string][]contact),
		runs:        make(map[string]chan callsResult),
	}
	// Logs go to stderr, which the test keeps and prints if it fails.
	n.members, err = memberlist.Join(memberlist.Config{
		NodeID:            cfg.ID,
		TransportAddr:     net.JoinHostPort(cfg.IP, strconv.Itoa(transportPort)),
		BindAddr:          net.JoinHostPort(cfg.IP, strconv.Itoa(gossipPort)),
		Seeds:             cfg.Seeds,
		ReconnectInterval: cfg.ReconnectInterval,
		Tune: func(c *ml.Config) {
			fastFailureDetection(c)
			if cfg.SuspicionMult != 0 {
				c.SuspicionMult = cfg.SuspicionMult
			}
			c.Ping = contactRecorder{n}
			c.Alive = contactRecorder{n}
		},
		Logger: log.New(os.Stderr, string(cfg.ID)+" memberlist: ", log.Lmicroseconds),
	})
	if err != nil {
		return err
	}
	defer n.members.Close()

	tcfg := transport.DefaultConfig()
	tcfg.NodeID = cfg.ID
	tcfg.ClusterName = clusterName
	tcfg.ListenAddr = net.JoinHostPort(cfg.IP, strconv.Itoa(transportPort))
	tcfg.Membership = timedMembership{Membership: n.members, n: n}
	tcfg.OnDropped = n.recordDropped
	tcfg.Telemetry.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("node", string(cfg.ID))
	if n.tr, err = transport.New(tcfg); err != nil {
		return err
	}
	defer n.tr.Close()
	defer n.closeRawEcho()
	defer n.background.Wait() // before Close: runs are bounded by their timeouts
	n.tr.Handle(verbEcho, transport.HandlerFunc(echo))
	n.tr.Handle(verbCount, transport.HandlerFunc(n.count))
	n.tr.Start()

	if err := writeAnswer(out, readyResult{TransportAddr: n.tr.Addr().String(), GossipAddr: n.members.GossipAddr()}, nil); err != nil {
		return err
	}
	return n.serve(in, out)
}

// serve answers commands until quit or the end of in.
func (n *node) serve(in io.Reader, out io.Writer) error {
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		args := strings.Fields(lines.Text())
		if len(args) == 0 {
			continue
		}
		if args[0] == "quit" {
			n.background.Wait()
			err := n.quit()
			if werr := writeAnswer(out, "bye", err); werr != nil {
				return werr
			}
			return err
		}
		result, err := n.command(args)
		if err := writeAnswer(out, result, err); err != nil {
			return err
		}
	}
	if err := lines.Err(); err != nil {
		return err
	}
	return errors.New("stdin closed before quit")
}

func writeAnswer(out io.Writer, result any, err error) error {
	var a answer
	if err != nil {
		a.Err = err.Error()
	} else {
		raw, merr := json.Marshal(result)
		if merr != nil {
			return merr
		}
		a.Result = raw
	}
	line, merr := json.Marshal(a)
	if merr != nil {
		return merr
	}
	_, werr := fmt.Fprintf(out, "%s%s\n", answerPrefix, line)
	return werr
}

func (n *node) command(args []string) (any, error) {
	need := func(count int) error {
		if len(args) != count+1 {
			return fmt.Errorf("%s takes %d arguments, got %d", args[0], count, len(args)-1)
		}
		return nil
	}
	switch args[0] {
	case "members":
		var ids []string
		for _, m := range n.members.Members() {
			ids = append(ids, string(m.ID))
		}
		return ids, nil
	case "request":
		if err := need(3); err != nil {
			return nil, err
		}
		count, timeout, err := countAndTimeout(args[2], args[3])
		if err != nil {
			return nil, err
		}
		return n.requests(cluster.NodeID(args[1]), count, timeout), nil
	case "send":
		if len(args) != 5 && len(args) != 6 {
			return nil, fmt.Errorf("send takes 4 or 5 arguments, got %d", len(args)-1)
		}
		count, timeout, err := countAndTimeout(args[2], args[3])
		if err != nil {
			return nil, err
		}
		size := 0
		if len(args) == 6 {
			if size, err = strconv.Atoi(args[5]); err != nil || size < 0 {
				return nil, fmt.Errorf("bad size %q", args[5])
			}
		}
		return n.sends(cluster.NodeID(args[1]), count, timeout, args[4], size), nil
	case "start":
		if err := need(5); err != nil {
			return nil, err
		}
		if args[2] != "request" {
			return nil, fmt.Errorf("start runs only request, not %q", args[2])
		}
		count, timeout, err := countAndTimeout(args[4], args[5])
		if err != nil {
			return nil, err
		}
		done, err := n.newRun(args[1])
		if err != nil {
			return nil, err
		}
		n.background.Go(func() { done <- n.requests(cluster.NodeID(args[3]), count, timeout) })
		return "started", nil
	case "repeat":
		return n.repeatCommand(args[1:])
	case "wait":
		if err := need(1); err != nil {
			return nil, err
		}
		n.mu.Lock()
		done := n.runs[args[1]]
		delete(n.runs, args[1])
		n.mu.Unlock()
		if done == nil {
			return nil, fmt.Errorf("no run named %q", args[1])
		}
		return <-done, nil // bounded: every call has a timeout
	case "stats":
		if err := need(1); err != nil {
			return nil, err
		}
		return n.stats(cluster.NodeID(args[1])), nil
	case "received":
		n.mu.Lock()
		defer n.mu.Unlock()
		counts := make(map[string]uint64, len(n.arrivals))
		for tag, a := range n.arrivals {
			counts[tag] = a.Count
		}
		return counts, nil
	case "arrivals":
		n.mu.Lock()
		defer n.mu.Unlock()
		return maps.Clone(n.arrivals), nil
	case "contacts":
		if err := need(1); err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		return slices.Clone(n.contacts[args[1]]), nil
	case "counters":
		if err := need(0); err != nil {
			return nil, err
		}
		return readLinkCounters(nodeLink)
	case "exchange", "rawecho":
		return n.exchangeCommand(args)
	case "rawserve":
		if err := need(0); err != nil {
			return nil, err
		}
		return n.startRawEcho(n.ip)
	case "events":
		if err := need(1); err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		return slices.Clone(n.events[cluster.NodeID(args[1])]), nil
	}
	return nil, fmt.Errorf("unknown command %q", args[0])
}

func countAndTimeout(countArg, timeoutArg string) (int, time.Duration, error) {
	count, err := strconv.Atoi(countArg)
	if err != nil || count < 1 {
		return 0, 0, fmt.Errorf("bad count %q", countArg)
	}
	timeout, err := time.ParseDuration(timeoutArg)
	if err != nil || timeout <= 0 {
		return 0, 0, fmt.Errorf("bad timeout %q", timeoutArg)
	}
	return count, timeout, nil
}

// requests makes count echo requests to peer, one after another, each with
// its own timeout.
func (n *node) requests(peer cluster.NodeID, count int, timeout time.Duration) callsResult {
	var r callsResult
	for i := range count {
		start := time.Now()
		err := n.request(peer, timeout, fmt.Appendf(nil, "%s-%d", n.id, i))
		r.record(start, time.Since(start), err)
	}
	return r
}

// request makes one echo request to peer and checks the response.
func (n *node) request(peer cluster.NodeID, timeout time.Duration, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := n.tr.Request(ctx, peer, verbEcho, payload)
	if err == nil && !bytes.Equal(resp, payload) {
		err = fmt.Errorf("%w: sent %q, got %q", errWrongPayload, payload, resp)
	}
	return err
}

// newRun registers a background run under name; its result goes to the
// returned channel, where wait collects it.
func (n *node) newRun(name string) (chan<- callsResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runs[name] != nil {
		return nil, fmt.Errorf("a run named %q is already started", name)
	}
	done := make(chan callsResult, 1)
	n.runs[name] = done
	return done, nil
}

// sends queues count one-way messages to peer, payload "<tag>/<i>/"
// padded to size bytes, each expiring after timeout if it is still queued
// or arrives later.
func (n *node) sends(peer cluster.NodeID, count int, timeout time.Duration, tag string, size int) callsResult {
	var r callsResult
	for i := range count {
		payload := taggedPayload(tag, i, size) // made before the clock starts: the Send is what is timed
		start := time.Now()
		err := n.send(peer, timeout, payload)
		r.record(start, time.Since(start), err)
	}
	return r
}

// send queues one one-way message to peer, expiring after timeout.
func (n *node) send(peer cluster.NodeID, timeout time.Duration, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.tr.Send(ctx, peer, verbCount, payload)
}

// taggedPayload returns "<tag>/<i>/" padded with 'x' to size bytes, a new
// slice each time: the transport may keep it until it is written.
func taggedPayload(tag string, i, size int) []byte {
	payload := fmt.Appendf(nil, "%s/%d/", tag, i)
	if pad := size - len(payload); pad > 0 {
		payload = append(payload, bytes.Repeat([]byte{'x'}, pad)...)
	}
	return payload
}

// quit leaves gracefully: drain the transport, tell the others, stop.
func (n *node) quit() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shutdownErr := n.tr.Shutdown(ctx)
	leaveErr := n.members.Leave(time.Second)
	if errors.Is(leaveErr, memberlist.ErrBroadcastTimeout) {
		leaveErr = nil // the others may have quit already; they need not hear it
	}
	return errors.Join(shutdownErr, leaveErr, n.members.Close())
}

func echo(_ context.Context, m *transport.Message) ([]byte, error) {
	return bytes.Clone(m.Payload), nil // the payload is reused after return
}

func (n *node) count(_ context.Context, m *transport.Message) ([]byte, error) {
	tag, _, _ := bytes.Cut(m.Payload, []byte("/"))
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.arrivals[string(tag)]
	if a.Count == 0 {
		a.First = now
	}
	a.Count++
	a.Last = now
	n.arrivals[string(tag)] = a
	return nil, nil
}

// recordDropped is Config.OnDropped: it runs on a writer goroutine, so it
// only counts. The tally survives the peer leaving.
func (n *node) recordDropped(d transport.DroppedMessage) {
	n.mu.Lock()
	defer n.mu.Unlock()
	lanes := n.hookDropped[d.Peer]
	if lanes == nil {
		lanes = make(map[string]*[transport.NumReasons]uint64)
		n.hookDropped[d.Peer] = lanes
	}
	counts := lanes[d.Lane.String()]
	if counts == nil {
		counts = new([transport.NumReasons]uint64)
		lanes[d.Lane.String()] = counts
	}
	counts[d.Reason]++
}

func (n *node) recordEvent(ev cluster.Event, at time.Time, took time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events[ev.Member.ID] = append(n.events[ev.Member.ID],
		memberEvent{Type: ev.Type.String(), Addr: ev.Member.Addr, At: at, Took: took})
}

func (n *node) stats(peer cluster.NodeID) statsResult {
	st := n.tr.Stats()
	r := statsResult{Lanes: make(map[string]laneStats), NodeDropped: reasonCounts(st.Total().Dropped)}
	for _, c := range st.Conns {
		if c.Peer != peer {
			continue
		}
		r.Present = true
		r.Lanes[c.Lane.String()] = laneStats{
			Sent:            c.MessagesSent,
			Dropped:         reasonCounts(c.Dropped),
			Pending:         c.PendingMessages,
			PendingBytes:    c.PendingBytes,
			Received:        c.MessagesReceived,
			DroppedInbound:  reasonCounts(c.DroppedInbound),
			Connects:        c.Connects,
			ConnectFailures: c.ConnectFailures,
			Connected:       c.Connected,
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for lane, counts := range n.hookDropped[peer] {
		ls := r.Lanes[lane]
		ls.HookDropped = reasonCounts(*counts)
		r.Lanes[lane] = ls
	}
	return r
}

// reasonCounts names the non-zero counts.
func reasonCounts(counts [transport.NumReasons]uint64) map[string]uint64 {
	out := make(map[string]uint64)
	for reason, v := range counts {
		if v > 0 {
			out[transport.Reason(reason).String()] = v
		}
	}
	return out
}
