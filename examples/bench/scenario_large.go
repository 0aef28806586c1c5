package main

// largeSenders is the number of closed-loop senders in the large scenario.
const largeSenders = 2

var scenarioLarge = &Scenario{
	Name:        "large",
	Doc:         "one-way -large-size (16 MiB) messages, 2 closed-loop senders; reports MB/s",
	Systems:     baseSystems,
	PayloadSize: func(o Options) int { return o.largeSize() },
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
