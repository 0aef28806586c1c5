package main

import (
	"time"

	"github.com/internode/internode/transport"
)

var scenarioLargeMixed = &Scenario{
	Name: "large-mixed",
	Doc: "large messages of mixed sizes at once: one closed-loop sender of -large-size (16 MiB) and one of 4× (64 MiB) " +
		"messages flood the peer while a probe sends 1/16× (1 MiB) messages one at a time; p50/p99 are the probe's, " +
		"from its Send call to the receiving handler; MB/s counts every size. internode's MaxMessageSize and limits are " +
		"raised to hold the largest message, and its Send waits for capacity as the baselines' senders do",
	Systems:     baseSystems,
	PayloadSize: func(o Options) int { return o.largeSize() },
	Tune:        func(c *transport.Config, o Options) { tuneLargeMixed(c, 4*o.largeSize()) },
	Load:        loadLargeMixed,
	Targets: []Target{
		{Metric: metricMBPerSec, System: "internode", Baseline: "raw-tcp-batched", Min: 0.8},
	},
	Chart:      []Metric{metricMBPerSec},
	MoreCharts: [][]Metric{{metricP50, metricP99}},
}

// loadLargeMixed: payload is the middle size; the probe is 1/16 of it and
// the other flood 4 times it.
func loadLargeMixed(r *Run, payload []byte) {
	probeSize := max(len(payload)/16, stampLen)
	huge := make([]byte, 4*len(payload))
	for i := range huge {
		huge[i] = byte(i)
	}
	rec := r.NewRecorder()
	delivered := make(chan struct{}, 1)
	r.OnDeliver(func(p []byte) {
		if len(p) != probeSize {
			return
		}
		intended, called, _ := r.readStamp(p)
		rec.Record(intended, called, time.Now())
		select {
		case delivered <- struct{}{}:
		default:
		}
	})
	for _, flood := range [][]byte{payload, huge} {
		r.Go(func() {
			for !r.Stopping() {
				r.Send(flood)
			}
		})
	}
	r.Go(func() {
		for !r.Stopping() {
			probe := make([]byte, probeSize) // the system may keep what it was sent
			now := time.Now()
			r.stamp(probe, now, now, 0)
			r.Send(probe)
			select {
			case <-delivered:
			case <-r.Stopped():
				return
			}
		}
	})
}

// tuneLargeMixed configures internode as large-mixed needs: to send and
// receive messages of n bytes, the largest the scenario sends, as the
// baselines do, MaxMessageSize is raised to n when it is less (the
// default, 32 MiB, is half of the 64 MiB flood), and so are the per-peer
// and node limits, both ways, to hold one such message with 1 MiB to
// spare for its header and queue entry (Config.Validate asks for that
// room). Send waits for capacity (WaitForCapacity), as the baselines'
// senders wait for their writers: refused, a 64 MiB message retried by
// Run.Send would find the peer's limit refilled by 16 MiB messages every
// time and never be sent, whereas waiters are served in turn.
func tuneLargeMixed(c *transport.Config, n int) {
	c.Memory.WaitForCapacity = true
	if n <= c.Memory.MaxMessageSize {
		return
	}
	c.Memory.MaxMessageSize = n
	need := int64(n) + 1<<20
	for _, lim := range []*transport.Limits{&c.Memory.Outbound, &c.Memory.Inbound} {
		def := transport.DefaultLimits()
		setIfZero(&lim.PerPeer, def.PerPeer)
		setIfZero(&lim.Node, def.Node)
		lim.PerPeer = max(lim.PerPeer, need)
		lim.Node = max(lim.Node, need)
	}
}
