package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Shape of the saturate scenario.
const (
	saturateNodes    = 4 // -nodes
	saturateSenders  = 4 // unpaced senders per node (-senders)
	saturateDuration = 10 * time.Second
	// rssBoundNodeLimit: the resident-set bound (nodes × 64 MiB +
	// 64 MiB) is for Outbound.Node = Inbound.Node = 32 MiB; it is shown for
	// internode runs whose Node limits are at most that.
	rssBoundNodeLimit = 32 << 20
	rssBoundPerNode   = 64 << 20
	rssBoundBase      = 64 << 20
	// saturateStampLen is the head of each payload: the send time, in ns
	// since the run's origin (u64 LE), and the sending node (u16 LE).
	saturateStampLen = 10
)

var (
	metricNodes       = Metric{Key: "nodes", Label: "nodes", Value: func(r Result) (float64, bool) { return derefInt(r.Nodes) }}
	metricPeakRSS     = Metric{Key: "peak_rss_bytes", Label: "peak RSS MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.PeakRSSBytes) }}
	metricRSSBound    = Metric{Key: "rss_bound_bytes", Label: "RSS bound MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.RSSBoundBytes) }}
	metricNodeLimits  = Metric{Key: "node_limits_bytes", Label: "node limits MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.NodeLimitsBytes) }}
	metricPeakCounted = Metric{Key: "peak_counted_bytes", Label: "peak counted MiB", Value: func(r Result) (float64, bool) { return mib(r.PeakCountedBytes) }}
	metricCountedHeap = Metric{Key: "counted_heap_ratio", Label: "counted / heap", Value: func(r Result) (float64, bool) { return deref(r.CountedHeapRatio) }}
	metricCountedLive = Metric{Key: "counted_live_ratio", Label: "counted / live heap", Value: func(r Result) (float64, bool) { return deref(r.CountedLiveRatio) }}
	metricPeakHeld    = Metric{Key: "peak_held_bytes", Label: "peak held MiB", Value: func(r Result) (float64, bool) { return mib(r.PeakHeldBytes) }}
)

func derefInt(p *int) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return float64(*p), true
}

var scenarioSaturate = &Scenario{
	Name: "saturate",
	Doc: "-nodes (4) nodes all to all in one child process, each with 4 (-senders) unpaced senders that " +
		"round-robin -payload (128 B) one-way messages over the other nodes for -duration (10 s here); at internode's " +
		"default limits or those of -out-node, -in-node, -per-peer, -per-conn. Reports msgs/s, one-way delay (send " +
		"call to handler), peak RSS and heap, the bytes internode counts against the heap, and sends refused as " +
		"overloaded; beside it a batched plain-TCP mesh (raw-tcp-mesh) in a child process of its own",
	OptIn:       true,
	Duration:    saturateDuration,
	Systems:     []string{"internode", "raw-tcp-mesh"},
	PayloadSize: func(o Options) int { return o.Payload },
	Measure:     measureSaturate,
	Targets: []Target{
		// The targets: bounded memory at 32 MiB node limits, most
		// of the heap counted at the default ones, throughput kept.
		{Metric: metricPeakRSS, System: "internode", Baseline: "internode", BaselineMetric: &metricRSSBound, Max: 1},
		{Metric: metricCountedHeap, System: "internode", Absolute: true, Min: 0.8},
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "raw-tcp-mesh", Min: 0.4},
		{Metric: metricLost, System: "internode", Absolute: true, Equal: true},
	},
	Columns: []Metric{metricNodes, metricPeakRSS, metricRSSBound, metricPeakHeap, metricNodeLimits,
		metricPeakCounted, metricCountedHeap, metricCountedLive, metricPeakHeld, metricOverloaded},
	Chart:      []Metric{metricMsgsPerSec},
	MoreCharts: [][]Metric{{metricPeakRSS, metricPeakHeap}, {metricP50, metricP99}},
}

// saturateLoad is one saturate run's senders and receivers.
type saturateLoad struct {
	m       mesh
	size    int
	base    time.Time // origin of stamps
	measure window    // send times whose delay is recorded
	stop    atomic.Bool

	receivers []*saturateReceiver // by node

	// Totals of the senders, added as each returns.
	accepted, overloaded, sendErrors atomic.Uint64
}

// saturateReceiver is one node's receiving end: messages delivered and
// the delays of those sent within the measured interval.
type saturateReceiver struct {
	delivered atomic.Uint64
	bytes     atomic.Uint64
	mu        sync.Mutex // guards delay
	delay     *hdrhistogram.Histogram
}

// measureSaturate is the saturate scenario's Measure: in this (child)
// process, start the mesh, run the senders for -warmup and -duration,
// stop them, drain, and read the figures. Memory is sampled from the
// mesh's start until the drain ends.
func measureSaturate(system string, opts Options) (Result, error) {
	entry, ok := findMesh(system)
	if !ok {
		return Result{}, fmt.Errorf("saturate: unknown system %q", system)
	}
	n, err := meshNodes(opts, saturateNodes)
	if err != nil {
		return Result{}, err
	}
	if opts.Payload < saturateStampLen {
		return Result{}, fmt.Errorf("saturate: -payload %d: need at least %d bytes for the send time and sender", opts.Payload, saturateStampLen)
	}
	resetPeakRSS() // VmHWM from here on; a fresh process has little to forget anyway
	l := &saturateLoad{m: entry.New(opts), size: opts.Payload, base: time.Now()}
	l.measure.init()
	for range n {
		l.receivers = append(l.receivers, &saturateReceiver{delay: newHistogram()})
	}
	accounted, _ := l.m.(accountedMesh)
	var accounts func() meshAccounts
	if accounted != nil {
		accounts = accounted.accounts
	}
	if err := l.m.start(n, l.deliver); err != nil {
		return Result{}, err
	}
	sampler := startMemSampler(accounts) // VmHWM covers the start
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var senders sync.WaitGroup
	for from := range n {
		for k := range opts.sendersOr(saturateSenders) {
			senders.Go(func() { l.sender(ctx, from, k, n) })
		}
	}

	time.Sleep(opts.Warmup)
	start, startDelivered, startBytes, startCPU := time.Now(), l.delivered(), l.deliveredBytes(), processCPU()
	startWrites, hasWrites := writeSyscalls()
	l.measure.start.Store(start.Sub(l.base).Nanoseconds())
	time.Sleep(opts.Duration)
	end, endDelivered, endBytes, endCPU := time.Now(), l.delivered(), l.deliveredBytes(), processCPU()
	endWrites, _ := writeSyscalls()
	l.measure.end.Store(end.Sub(l.base).Nanoseconds())

	l.stop.Store(true)
	sendersDone := waitGroupDone(&senders)
	failures := func() uint64 {
		if accounted != nil {
			return accounted.Failures()
		}
		return 0
	}
	drained := waitUntil(time.Now().Add(opts.Drain), sendersDone, func() bool {
		return l.delivered()+failures() >= l.accepted.Load()
	})
	peaks := sampler.stop()

	res := Result{Scenario: "saturate", System: system, PayloadBytes: opts.Payload, Repeats: 1, Drained: drained, Nodes: &n}
	res.Seconds = end.Sub(start).Seconds()
	msgs := float64(endDelivered - startDelivered)
	if res.Seconds > 0 {
		res.MsgsPerSec = msgs / res.Seconds
		res.MBPerSec = float64(endBytes-startBytes) / res.Seconds / 1e6
	}
	if msgs > 0 {
		res.CPUusPerMsg = float64((endCPU - startCPU).Microseconds()) / msgs
		if hasWrites {
			w := float64(endWrites-startWrites) / msgs
			res.WritesPerMsg = &w
		}
	}
	delay := newHistogram()
	for _, rcv := range l.receivers {
		rcv.mu.Lock()
		delay.Merge(rcv.delay)
		rcv.mu.Unlock()
	}
	if delay.TotalCount() > 0 {
		res.Samples = delay.TotalCount()
		res.P50us, res.P99us, res.P999us = quantiles(delay)
	}
	res.Sent, res.Delivered, res.Failed = l.accepted.Load(), l.delivered(), failures()
	res.Lost = int64(res.Sent) - int64(res.Delivered) - int64(res.Failed)
	overloaded := l.overloaded.Load()
	res.Overloaded, res.Rejected, res.SendErrors = &overloaded, overloaded, l.sendErrors.Load()
	if load, ok := loadAverage(); ok {
		res.LoadAvg = &load
	}
	fl := func(v int64) *float64 { f := float64(v); return &f }
	heap := fl(peaks.heap)
	res.PeakHeapBytes = heap
	if peaks.rss > 0 {
		res.PeakRSSBytes = fl(peaks.rss)
	}
	if accounted != nil {
		limits, bounded := accounted.nodeLimits()
		res.NodeLimitsBytes = fl(limits)
		if bounded {
			res.RSSBoundBytes = fl(int64(n)*rssBoundPerNode + rssBoundBase)
		}
		res.PeakCountedBytes, res.PeakHeldBytes = fl(peaks.counted), fl(peaks.held)
		ratio := func(of int64) *float64 {
			if of <= 0 {
				return nil // no GC yet
			}
			r := float64(peaks.countedSum) / float64(of)
			return &r
		}
		res.CountedHeapRatio, res.CountedLiveRatio = ratio(peaks.heapSum), ratio(peaks.liveSum)
	}

	cancel()
	closeErr := l.m.close()
	select {
	case <-sendersDone:
	case <-time.After(opts.Drain):
		return res, errors.Join(closeErr, errors.New("saturate: senders still blocked after close"))
	}
	return res, closeErr
}

// sender is one unpaced sender of node from: it sends to the other nodes
// in turn, starting from its own offset k so that a node's senders spread
// over its peers, until the load stops. Each message is a new slice (the
// mesh may keep it until written, as a user's would). A send refused for
// lack of capacity, or failed, is counted and followed by a sleep of 10 µs,
// doubling up to 250 µs while refusals last (as the harness's Run.Send);
// the sender then goes on with the next message.
func (l *saturateLoad) sender(ctx context.Context, from, k, n int) {
	var accepted, overloaded, failed uint64
	defer func() {
		l.accepted.Add(accepted)
		l.overloaded.Add(overloaded)
		l.sendErrors.Add(failed)
	}()
	backoff := time.Duration(0)
	for i := k; !l.stop.Load(); i++ {
		to := (from + 1 + i%(n-1)) % n // every node but from
		msg := make([]byte, l.size)
		binary.LittleEndian.PutUint64(msg[0:8], uint64(time.Since(l.base).Nanoseconds()))
		binary.LittleEndian.PutUint16(msg[8:10], uint16(from))
		err := l.m.send(ctx, from, to, msg)
		switch {
		case err == nil:
			accepted++
			backoff = 0
			continue
		case errors.Is(err, ErrBusy):
			overloaded++
		default:
			failed++
		}
		backoff = min(max(2*backoff, 10*time.Microsecond), 250*time.Microsecond)
		time.Sleep(backoff)
	}
}

// deliver is every node's receiver hook: it counts the message and, if it
// was sent within the measured interval, records its delay.
func (l *saturateLoad) deliver(to int, payload []byte) {
	rcv := l.receivers[to]
	if len(payload) >= saturateStampLen {
		sent := int64(binary.LittleEndian.Uint64(payload[0:8]))
		if l.measure.contains(sent) {
			delay := time.Since(l.base).Nanoseconds() - sent
			rcv.mu.Lock()
			_ = rcv.delay.RecordValue(delay) // beyond 60 s: dropped
			rcv.mu.Unlock()
		}
	}
	rcv.bytes.Add(uint64(len(payload)))
	rcv.delivered.Add(1)
}

func (l *saturateLoad) delivered() uint64 {
	var n uint64
	for _, rcv := range l.receivers {
		n += rcv.delivered.Load()
	}
	return n
}

func (l *saturateLoad) deliveredBytes() uint64 {
	var n uint64
	for _, rcv := range l.receivers {
		n += rcv.bytes.Load()
	}
	return n
}
