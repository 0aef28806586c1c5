package main

// Shape of the hol scenario.
const (
	holRate        = 2000 // small requests per second (-rate)
	holBulkSenders = 2    // closed-loop senders of large messages
)

var scenarioHOL = &Scenario{
	Name: "hol",
	Doc: "head-of-line blocking: -payload (128 B) echo requests open loop at -rate (2000)/s, latency from the intended " +
		"send time; measured first alone (idle p50/p99), then while 2 closed-loop senders stream -large-size (16 MiB) " +
		"one-way messages to the same peer (p50/p99, and MB/s, which is almost all large messages)",
	Systems:     []string{"internode", "internode-single-lane", "grpc-stream"},
	PayloadSize: func(o Options) int { return o.Payload },
	Idle: func(r *Run, payload []byte) {
		loadOpenLoop(r, payload, r.Opts.rateOr(holRate), r.NewIdleRecorder(), r.NewRecorder())
	},
	Load: loadBulk,
	Targets: []Target{
		{Metric: metricP99, System: "internode", Baseline: "internode", BaselineMetric: &metricP99Idle, Max: 2},
		{Metric: metricP99, System: "internode", Baseline: "internode-single-lane", Max: 0.2},
	},
	// The p99 counts from each request's intended start; the service p99
	// (the requests' own time, under the bulk and alone) and the start
	// delays (how late the pacer's timer fired) split it.
	Columns:    []Metric{metricP50Idle, metricP99Idle, metricServiceP99, metricSvcP99Idle, metricStartP99, metricStartIdle},
	Chart:      []Metric{metricP50Idle, metricP99Idle, metricP50, metricP99},
	MoreCharts: [][]Metric{{metricMBPerSec}},
}

// loadBulk starts the large-message senders. A system with a bulkChunk
// (internode-single-lane) gets each large message as consecutive messages
// of at most that size.
func loadBulk(r *Run, _ []byte) {
	large := make([]byte, r.Opts.largeSize())
	for i := range large {
		large[i] = byte(i)
	}
	chunk := len(large)
	if s, ok := r.Sys.(*internodeSystem); ok && s.bulkChunk > 0 {
		chunk = s.bulkChunk
	}
	for range holBulkSenders {
		r.Go(func() {
			for !r.Stopping() {
				for off := 0; off < len(large) && !r.Stopping(); off += chunk {
					r.Send(large[off:min(off+chunk, len(large))])
				}
			}
		})
	}
}
