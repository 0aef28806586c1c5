package main

// smallSenders is the default number of closed-loop senders in the small
// scenario (-senders).
const smallSenders = 8

var scenarioSmall = &Scenario{
	Name: "small",
	Doc:  "one-way, 8 (-senders) closed-loop senders, -payload bytes; counted when the receiving handler runs",
	Systems: append(append([]string{"internode", "internode-nometrics"}, coalescingRows...),
		"raw-tcp-naive", "raw-tcp-batched", "grpc-stream", "grpc-unary"),
	PayloadSize: func(o Options) int { return o.Payload },
	Load: func(r *Run, payload []byte) {
		for range r.Opts.sendersOr(smallSenders) {
			r.Go(func() {
				for !r.Stopping() {
					r.Send(payload)
				}
			})
		}
	},
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "grpc-stream", Min: 10},
		// Issue 18 raised this from 0.3×.
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "raw-tcp-batched", Min: 0.5},
		// Issue 7: metrics (SDK MeterProvider) and socket measurement cost
		// at most 5% of throughput.
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "internode-nometrics", Min: 0.95},
	},
	Chart:      []Metric{metricMsgsPerSec},
	MoreCharts: [][]Metric{{metricCPUPerMsg}},
}
