package main

// reqRespInFlight is the number of requests in flight in the reqresp
// scenario: like the "max pending 128" of the Cassandra load test in seed
// 000, the client never has more outstanding.
const reqRespInFlight = 128

// reqRespRecorders spreads latency recording over a few histograms so that
// 128 goroutines do not contend on one lock.
const reqRespRecorders = 8

var scenarioReqResp = &Scenario{
	Name:        "reqresp",
	Doc:         "echo request/response, 128 in flight (closed loop), -payload bytes each way",
	Systems:     baseSystems,
	PayloadSize: func(o Options) int { return o.Payload },
	Load: func(r *Run, payload []byte) {
		recs := make([]*Recorder, reqRespRecorders)
		for i := range recs {
			recs[i] = r.NewRecorder()
		}
		for i := range reqRespInFlight {
			rec := recs[i%len(recs)]
			r.Go(func() {
				for !r.Stopping() {
					r.Request(payload, rec)
				}
			})
		}
	},
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "grpc-unary", Min: 3},
	},
	Chart: []Metric{metricMsgsPerSec},
}
