package main

import (
	"time"

	"github.com/internode/internode/transport"
)

// reqRespInFlight is the number of requests in flight in the reqresp
// scenario: like the "max pending 128" of the Cassandra load test in seed
// 000, the client never has more outstanding.
const reqRespInFlight = 128

// reqRespRecorders spreads latency recording over a few histograms so that
// 128 goroutines do not contend on one lock.
const reqRespRecorders = 8

// echoConcurrency is how many echo handlers internode runs at once: as
// many as requests in flight in reqresp-slow, as gRPC runs each call in
// a goroutine of its own.
const echoConcurrency = reqRespSlowInFlight

// reqRespSlowInFlight is the number of requests in flight in reqresp-slow.
const reqRespSlowInFlight = 256

var scenarioReqRespSlow = &Scenario{
	Name:        "reqresp-slow",
	Doc:         "echo request/response to a handler that takes 1 ms, 256 in flight (closed loop), -payload bytes each way",
	Systems:     []string{"internode", "grpc-unary"},
	PayloadSize: func(o Options) int { return o.Payload },
	EchoDelay:   time.Millisecond,
	Supports: func(sys System) bool {
		switch sys.(type) {
		case *internodeSystem, *grpcUnary:
			return true
		}
		return false
	},
	Load: closedLoopRequests(reqRespSlowInFlight),
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "grpc-unary", Min: 1.5},
		{Metric: metricP99, System: "internode", Baseline: "grpc-unary", Max: 1},
	},
	Chart: []Metric{metricMsgsPerSec, metricP99},
}

var scenarioReqResp = &Scenario{
	Name:        "reqresp",
	Doc:         "echo request/response, 128 in flight (closed loop), -payload bytes each way",
	Systems:     baseSystems,
	PayloadSize: func(o Options) int { return o.Payload },
	Load:        closedLoopRequests(reqRespInFlight),
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "internode", Baseline: "grpc-unary", Min: 3},
	},
	Chart: []Metric{metricMsgsPerSec},
}

// closedLoopRequests is a Load that keeps inFlight requests outstanding,
// each goroutine sending its next as soon as its last is answered.
func closedLoopRequests(inFlight int) func(r *Run, payload []byte) {
	return func(r *Run, payload []byte) {
		recs := make([]*Recorder, reqRespRecorders)
		for i := range recs {
			recs[i] = r.NewRecorder()
		}
		for i := range inFlight {
			rec := recs[i%len(recs)]
			r.Go(func() {
				for !r.Stopping() {
					r.Request(payload, rec)
				}
			})
		}
	}
}

// echoRunsOn says how internode runs its echo handler: on the reader's
// goroutine (transport.Inline) when it answers at once, as it then
// never blocks; in a stage of echoConcurrency when it takes EchoDelay.
func echoRunsOn(h Hooks) transport.HandleOption {
	if h.EchoDelay > 0 {
		return transport.Concurrent(echoConcurrency)
	}
	return transport.Inline()
}
