package main

// smallSenders is the number of closed-loop senders in the small scenario.
const smallSenders = 8

var scenarioSmall = &Scenario{
	Name:        "small",
	Doc:         "one-way, 8 closed-loop senders, -payload bytes; counted when the receiving handler runs",
	PayloadSize: func(o Options) int { return o.Payload },
	Load: func(r *Run, payload []byte) {
		for range smallSenders {
			r.Go(func() {
				for !r.Stopping() {
					r.Send(payload)
				}
			})
		}
	},
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "grpc-stream", Min: 10},
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "raw-tcp-batched", Min: 0.3},
	},
	Chart: []Metric{metricMsgsPerSec},
}
