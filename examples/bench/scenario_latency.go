package main

import "time"

var scenarioLatency = &Scenario{
	Name:        "latency",
	Doc:         "open loop at -rate requests/s from one scheduler; latency from the intended send time to the echo",
	PayloadSize: func(o Options) int { return o.Payload },
	Load:        loadOpenLoop,
	Targets: []Target{
		{Metric: metricP50, System: "internode", Baseline: "raw-tcp-naive", Max: 1.3},
		// Not in the brief: the same bound on service time, which the
		// scheduler's own lateness (counted in p50 above, for every system
		// alike) cannot dilute.
		{Metric: metricServiceP50, System: "internode", Baseline: "raw-tcp-naive", Max: 1.3},
	},
	Chart: []Metric{metricP50, metricP99, metricP999, metricServiceP50},
}

// loadOpenLoop issues request i at start + i/rate whether or not earlier
// ones have completed, each in its own goroutine, and measures from that
// intended time: a stall delays the scheduler's sends but cannot hide
// them (no coordinated omission).
func loadOpenLoop(r *Run, payload []byte) {
	rec := r.NewRecorder()
	interval := time.Second / time.Duration(max(r.Opts.Rate, 1))
	r.Go(func() {
		timer := time.NewTimer(0)
		defer timer.Stop()
		start := time.Now()
		for i := 0; ; i++ {
			intended := start.Add(time.Duration(i) * interval)
			if wait := time.Until(intended); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-r.Stopped():
					return
				}
			}
			if r.Stopping() {
				return
			}
			r.Go(func() { r.RequestAt(intended, payload, rec) })
		}
	})
}
