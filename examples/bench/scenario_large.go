package main

// Shape of the large scenario.
const (
	largePayload = 16 << 20
	largeSenders = 2
)

var scenarioLarge = &Scenario{
	Name:        "large",
	Doc:         "one-way 16 MiB messages, 2 closed-loop senders; reports MB/s",
	PayloadSize: func(Options) int { return largePayload },
	Load: func(r *Run, payload []byte) {
		for range largeSenders {
			r.Go(func() {
				for !r.Stopping() {
					r.Send(payload)
				}
			})
		}
	},
	Targets: []Target{
		{Metric: metricMBPerSec, System: "internode", Baseline: "raw-tcp-batched", Min: 0.8},
	},
	Chart: []Metric{metricMBPerSec},
}
