package main

import (
	"runtime/metrics"
	"time"

	"github.com/internode/internode/transport"
)

// Shape of the overload scenario.
const (
	overloadSenders = 4 // closed-loop senders (-senders)
	// overloadPoll is how often the receiver's inbound bytes and the heap
	// are read.
	overloadPoll = time.Millisecond
	// overloadMaxMessage is the MaxMessageSize of the scenario's config:
	// it must fit the small limits below (Config.Validate).
	overloadMaxMessage = 1 << 20
)

// overloadLimits are the scenario's modest limits, inbound and outbound:
// 4 MiB per connection, 16 MiB per peer and node-wide.
var overloadLimits = transport.Limits{PerConnection: 4 << 20, PerPeer: 16 << 20, Node: 16 << 20}

var scenarioOverload = &Scenario{
	Name: "overload",
	Doc: "the receiving handler blocks for the whole run while 4 (-senders) closed-loop senders flood one-way " +
		"-payload messages; limits 4 MiB per connection, 16 MiB per peer and node-wide, both ways; at the end the " +
		"handler is released and everything drains. Reports the receiver's peak inbound bytes against their bound, " +
		"the peak heap and the sends refused as overloaded",
	Systems:  []string{"internode"},
	Supports: isInternode,
	Tune: func(c *transport.Config, _ Options) {
		c.Memory.MaxMessageSize = overloadMaxMessage
		c.Memory.Inbound = overloadLimits
		c.Memory.Outbound = overloadLimits
	},
	PayloadSize: func(o Options) int { return o.Payload },
	Load:        loadOverload,
	Targets: []Target{
		{Metric: metricPeakIn, System: "internode", Baseline: "internode", BaselineMetric: &metricInLimit, Max: 1},
		{Metric: metricLost, System: "internode", Absolute: true, Equal: true},
	},
	Columns:    []Metric{metricPeakIn, metricInLimit, metricPeakHeap, metricOverloaded},
	Chart:      []Metric{metricPeakIn, metricInLimit, metricPeakHeap},
	MoreCharts: [][]Metric{{metricOverloaded}},
}

// loadOverload holds every receiving handler until the load stops, floods,
// and polls, from the start to the end of the drain, the receiver's
// Stats().InboundHeld and the heap.
//
// The bound: InboundHeld is the inbound connections' own capacity in use
// plus the node reserve in use. Each connection holds at most
// Inbound.PerConnection, and one peer's messages take at most
// min(PerPeer, Node) from the reserves, so with one sending peer
//
//	inbound_limit_bytes = PerConnection × (inbound connections, the most seen) + min(PerPeer, Node)
//
// (4 MiB × 1 + 16 MiB here: the flood uses the small lane only).
//
// The heap is runtime/metrics' /memory/classes/heap/objects:bytes, which
// is runtime.MemStats.HeapAlloc without stopping the world to read it; it
// covers both ends (one process), the sender's queues included.
func loadOverload(r *Run, payload []byte) {
	s := r.Sys.(*internodeSystem)
	release := r.HoldHandlers()
	var peakHeld, peakHeap int64
	var peakConns int
	r.Background(func(stop <-chan struct{}) {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(overloadPoll)
		defer tick.Stop()
		for {
			st := s.b.Stats()
			peakHeld = max(peakHeld, st.InboundHeld)
			peakConns = max(peakConns, st.InboundConnections)
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				peakHeap = max(peakHeap, int64(sample[0].Value.Uint64()))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	// The handler is released when the load stops, so that the drain
	// delivers (or accounts) every message accepted.
	r.Go(func() {
		<-r.Stopped()
		release()
	})
	for range r.Opts.sendersOr(overloadSenders) {
		r.Go(func() {
			for !r.Stopping() {
				r.Send(payload)
			}
		})
	}
	r.OnResult(func(res *Result) { // after Background returned
		lim := s.inbound
		held, heap := float64(peakHeld), float64(peakHeap)
		bound := float64(lim.PerConnection*int64(max(peakConns, 1)) + min(lim.PerPeer, lim.Node))
		overloaded := res.Rejected // internode's Send answers ErrBusy only for ErrOverloaded
		res.PeakInboundBytes, res.PeakHeapBytes, res.InboundLimitBytes = &held, &heap, &bound
		res.Overloaded = &overloaded
	})
}
