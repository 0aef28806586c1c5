package main

import "time"

var scenarioLargeMixed = &Scenario{
	Name: "large-mixed",
	Doc: "large messages of mixed sizes at once: one closed-loop sender of -large-size (16 MiB) and one of 4× (64 MiB) " +
		"messages flood the peer while a probe sends 1/16× (1 MiB) messages one at a time; p50/p99 are the probe's, " +
		"from its Send call to the receiving handler; MB/s counts every size",
	Systems:     baseSystems,
	PayloadSize: func(o Options) int { return o.largeSize() },
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
