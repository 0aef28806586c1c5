package main

import "time"

// latencyRate is the latency scenario's default -rate.
const latencyRate = 2000

var scenarioLatency = &Scenario{
	Name:        "latency",
	Doc:         "open loop at -rate (2000) requests/s from one scheduler; latency from the intended send time to the echo",
	Systems:     append(append([]string{"internode"}, coalescingRows...), "raw-tcp-naive", "raw-tcp-batched", "grpc-stream", "grpc-unary"),
	PayloadSize: func(o Options) int { return o.Payload },
	Load: func(r *Run, payload []byte) {
		rec := r.NewRecorder()
		loadOpenLoop(r, payload, r.Opts.rateOr(latencyRate), rec)
	},
	Targets: []Target{
		{Metric: metricP50, System: "internode", Baseline: "raw-tcp-naive", Max: 1.3},
		// The call alone (service time), which the scheduler's own
		// lateness (counted in p50 above, for every system alike) cannot
		// dilute: issue 18's bound.
		{Metric: metricServiceP50, System: "internode", Baseline: "raw-tcp-naive", Max: 1.15},
		// Issue 4: at low load Adaptive coalescing costs no latency
		// against drain-only batching.
		{Metric: metricP50, System: "internode", Baseline: "internode-disabled", Max: 1.1},
		{Metric: metricServiceP50, System: "internode", Baseline: "internode-disabled", Max: 1.1},
	},
	Chart: []Metric{metricP50, metricP99, metricP999, metricServiceP50},
}

// loadOpenLoop issues request i at start + i/rate whether or not earlier
// ones have completed, each in its own goroutine, and measures from that
// intended time: a stall delays the scheduler's sends but cannot hide
// them (no coordinated omission). Each sample goes to every recorder
// given; each keeps those of its own window.
func loadOpenLoop(r *Run, payload []byte, rate int, recs ...*Recorder) {
	interval := time.Second / time.Duration(max(rate, 1))
	r.Go(func() {
		r.paced(time.Now(), interval, func(intended time.Time) {
			r.Go(func() { r.RequestAt(intended, payload, recs...) })
		})
	})
}
