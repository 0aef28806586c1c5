package main

import "time"

// Defaults of the coalesce scenario (-senders, -rate).
const (
	coalesceSenders = 64
	coalesceRate    = 100_000
	// coalesceRecorders spreads the receiver's latency recording over a
	// few histograms (by sender).
	coalesceRecorders = 8
)

var scenarioCoalesce = &Scenario{
	Name: "coalesce",
	Doc: "one-way, -senders (64) open-loop senders at -rate (100000) messages/s in total, -payload bytes; " +
		"latency from each message's intended send time to the receiving handler; compares coalescing strategies",
	Systems:     coalescingVaries,
	PayloadSize: func(o Options) int { return max(o.Payload, stampLen) },
	Load:        loadCoalesce,
	Targets: []Target{
		{Metric: metricWritesMsg, System: "internode", Baseline: "internode-disabled", Max: 0.25},
		{Metric: metricCPUPerMsg, System: "internode", Baseline: "internode-disabled", Max: 0.8},
		{Metric: metricP99, System: "internode", Baseline: "internode-disabled", Plus: 1000},
	},
	Chart:      []Metric{metricWritesMsg, metricVecWrites},
	MoreCharts: [][]Metric{{metricCPUPerMsg}, {metricP50, metricP99}},
}

// loadCoalesce starts the senders, each open loop at rate/senders with its
// phase shifted so that together they send evenly. Each message is a copy
// of payload stamped with its intended send time; the receiver hook
// records the latency from it to the handler.
func loadCoalesce(r *Run, payload []byte) {
	senders := r.Opts.sendersOr(coalesceSenders)
	rate := r.Opts.rateOr(coalesceRate)
	interval := time.Duration(float64(time.Second) * float64(senders) / float64(rate))
	recs := make([]*Recorder, coalesceRecorders)
	for i := range recs {
		recs[i] = r.NewRecorder()
	}
	r.OnDeliver(func(p []byte) {
		intended, called, tag := r.readStamp(p)
		recs[int(tag)%len(recs)].Record(intended, called, time.Now())
	})
	start := time.Now()
	for i := range senders {
		phase := interval * time.Duration(i) / time.Duration(senders)
		r.Go(func() {
			r.paced(start.Add(phase), interval, func(intended time.Time) {
				msg := append([]byte(nil), payload...) // the system may keep what it was sent
				r.stamp(msg, intended, time.Now(), byte(i))
				r.Send(msg)
			})
		})
	}
}
