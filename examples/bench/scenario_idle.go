package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// Shape of the idle scenario.
const (
	idleNodes = 16 // -nodes
	// The nodes' IdleTimeout is idleTimeoutMin, or idleTimeoutPerPair per
	// ordered pair when that is more: every lane must still be open when
	// the last pair's are (this machine opens a pair's in about 0.6 ms).
	idleTimeoutMin     = time.Second
	idleTimeoutPerPair = 2 * time.Millisecond
	idleSmallSize      = 128
	idleLargeSize      = 128 << 10 // above the default 64 KiB LargeThreshold: the large lane
	idleMessages       = 3         // per ordered pair: urgent, small, large
	idleLongestWait    = 30 * time.Second
)

var (
	metricPairs          = Metric{Key: "pairs", Label: "pairs", Value: func(r Result) (float64, bool) { return derefInt(r.Pairs) }}
	metricOpenPerPair    = Metric{Key: "open_bytes_per_pair", Label: "KiB/pair open", Lower: true, Value: func(r Result) (float64, bool) { return kib(r.OpenBytesPerPair) }}
	metricOpenStacks     = Metric{Key: "open_stack_bytes_per_pair", Label: "of it stacks", Lower: true, Value: func(r Result) (float64, bool) { return kib(r.OpenStackBytesPerPair) }}
	metricOpenGoroutines = Metric{Key: "open_goroutines_per_pair", Label: "goroutines/pair open", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.OpenGoroutinesPerPair) }}
	metricClosedPerPair  = Metric{Key: "closed_bytes_per_pair", Label: "KiB/pair closed", Lower: true, Value: func(r Result) (float64, bool) { return kib(r.ClosedBytesPerPair) }}
	metricClosedStacks   = Metric{Key: "closed_stack_bytes_per_pair", Label: "of it stacks", Lower: true, Value: func(r Result) (float64, bool) { return kib(r.ClosedStackBytesPerPair) }}
	metricClosedGorout   = Metric{Key: "closed_goroutines_per_pair", Label: "goroutines/pair closed", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.ClosedGoroutinesPerPair) }}
)

// kib shows a byte count in KiB (the JSON field stays in bytes).
func kib(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p / (1 << 10), true
}

var scenarioIdle = &Scenario{
	Name: "idle",
	Doc: "idle cost: -nodes (16) internode nodes in one child process, IdleTimeout 1 s (2 ms per ordered pair when more); every ordered pair opens " +
		"every lane (one urgent, one small and one 128 KiB message, delivered); then the memory retained (heap objects " +
		"plus goroutine stacks, after two GCs, minus the same nodes' before any traffic) and the goroutines, per " +
		"ordered pair, with the lanes open and again once idle close has closed every connection",
	OptIn:       true,
	Systems:     []string{"internode"},
	PayloadSize: func(Options) int { return idleSmallSize },
	Measure:     measureIdle,
	Targets: []Target{
		{Metric: metricOpenPerPair, System: "internode", Absolute: true, Max: 64},
		{Metric: metricClosedPerPair, System: "internode", Absolute: true, Max: 8},
	},
	Columns: []Metric{metricNodes, metricPairs, metricOpenPerPair, metricOpenStacks, metricOpenGoroutines,
		metricClosedPerPair, metricClosedStacks, metricClosedGorout},
	Chart:      []Metric{metricOpenPerPair, metricClosedPerPair},
	MoreCharts: [][]Metric{{metricOpenGoroutines, metricClosedGorout}},
}

// measureIdle is the idle scenario's Measure, in this (child) process.
func measureIdle(system string, opts Options) (Result, error) {
	if system != "internode" {
		return Result{}, fmt.Errorf("idle: unknown system %q (internode only)", system)
	}
	n, err := meshNodes(opts, idleNodes)
	if err != nil {
		return Result{}, err
	}
	if err := ensureFileLimit(idleFiles(n)); err != nil {
		most := n
		for most > 2 && ensureFileLimit(idleFiles(most)) != nil {
			most--
		}
		return Result{}, fmt.Errorf("idle with %d nodes (at most %d here): %w", n, most, err)
	}
	pairs := n * (n - 1)
	idleTimeout := max(idleTimeoutMin, time.Duration(pairs)*idleTimeoutPerPair)
	m := newInternodeMesh(opts.Limits, func(c *transport.Config) {
		c.Timeouts.Idle = idleTimeout
		c.Lanes.Overrides = map[transport.Verb]routing.Lane{verbUrgent: routing.Urgent}
	})
	// arrived[from*n+to] gets a token per message delivered from from to to.
	arrived := make([]chan struct{}, n*n)
	for i := range arrived {
		arrived[i] = make(chan struct{}, idleMessages)
	}
	var delivered atomic.Uint64
	deliver := func(to int, payload []byte) {
		from := int(binary.LittleEndian.Uint16(payload))
		delivered.Add(1)
		select {
		case arrived[from*n+to] <- struct{}{}:
		default: // more than idleMessages: counted, and the lost figure shows it
		}
	}
	if err := m.start(n, deliver); err != nil {
		return Result{}, err
	}
	res := Result{Scenario: "idle", System: system, PayloadBytes: idleSmallSize, Repeats: 1, Nodes: &n, Pairs: &pairs}

	before := measureRetained()
	var sent atomic.Uint64
	var senders sync.WaitGroup
	errs := make([]error, n)
	for from := range n {
		senders.Go(func() { errs[from] = idleOpenLanes(m, from, n, arrived, &sent) })
	}
	senders.Wait()
	open := measureRetained()
	lanesOpen, inboundOpen := m.open()
	closedAll := waitFor(idleTimeout+idleLongestWait, func() bool {
		lanes, inbound := m.open()
		return lanes == 0 && inbound == 0
	})
	closed := measureRetained()

	perPair := func(after, before int64) *float64 {
		v := float64(after-before) / float64(pairs)
		return &v
	}
	res.OpenBytesPerPair = perPair(open.heap+open.stacks, before.heap+before.stacks)
	res.OpenStackBytesPerPair = perPair(open.stacks, before.stacks)
	res.OpenGoroutinesPerPair = perPair(int64(open.goroutines), int64(before.goroutines))
	res.ClosedBytesPerPair = perPair(closed.heap+closed.stacks, before.heap+before.stacks)
	res.ClosedStackBytesPerPair = perPair(closed.stacks, before.stacks)
	res.ClosedGoroutinesPerPair = perPair(int64(closed.goroutines), int64(before.goroutines))
	res.Sent, res.Delivered, res.Failed = sent.Load(), delivered.Load(), m.Failures()
	res.Lost = int64(res.Sent) - int64(res.Delivered) - int64(res.Failed)
	res.Drained = res.Lost == 0
	if load, ok := loadAverage(); ok {
		res.LoadAvg = &load
	}

	err = errors.Join(errs...)
	if want := int(routing.NumLanes) * pairs; lanesOpen != want || inboundOpen != want {
		err = errors.Join(err, fmt.Errorf("idle: %d of %d lanes and %d of %d inbound connections open when measured open (IdleTimeout %v)",
			lanesOpen, want, inboundOpen, want, idleTimeout))
	}
	if !closedAll {
		lanes, inbound := m.open()
		err = errors.Join(err, fmt.Errorf("idle: %d lanes and %d inbound connections still open %v after the last message (IdleTimeout %v); measured anyway",
			lanes, inbound, idleTimeout+idleLongestWait, idleTimeout))
	}
	return res, errors.Join(err, m.close())
}

// idleFiles is about the most files an idle run with n nodes holds open:
// each lane of each ordered pair is a socket at both ends, in this
// process; then listeners, and what the runtime holds.
func idleFiles(n int) uint64 { return uint64(2*int(routing.NumLanes)*n*(n-1) + 4*n + 256) }

// idleOpenLanes opens every lane from node from to each other node in
// turn: it sends one message on each lane and waits until the three have
// arrived, so that at most one peer's connections per node are being set
// up at a time. The payloads start with from (u16 LE), are shared by
// every send and never modified.
func idleOpenLanes(m *internodeMesh, from, n int, arrived []chan struct{}, sent *atomic.Uint64) error {
	small := make([]byte, idleSmallSize)
	large := make([]byte, idleLargeSize)
	binary.LittleEndian.PutUint16(small, uint16(from))
	binary.LittleEndian.PutUint16(large, uint16(from))
	ctx := context.Background()
	for k := 1; k < n; k++ {
		// Peers in the order from+1, from+2...: while the nodes keep pace,
		// each has one peer dialling it at a time, under the transport's
		// limit on pending handshakes from one host (all are 127.0.0.1).
		to := (from + k) % n
		for _, msg := range []struct {
			verb    transport.Verb
			payload []byte
		}{{verbUrgent, small}, {verbOneway, small}, {verbOneway, large}} {
			if err := m.sendVerb(ctx, from, to, msg.verb, msg.payload); err != nil {
				return fmt.Errorf("idle: n%d to n%d: %w", from, to, err)
			}
			sent.Add(1)
		}
		timeout := time.NewTimer(idleLongestWait)
		for range idleMessages {
			select {
			case <-arrived[from*n+to]:
			case <-timeout.C:
				return fmt.Errorf("idle: n%d to n%d: messages not delivered within %v", from, to, idleLongestWait)
			}
		}
		timeout.Stop()
	}
	return nil
}

// waitFor polls cond every 50 ms until it holds (true) or timeout passes
// (false).
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
