// Command bench compares internode with the transports a user would pick
// instead — hand-rolled TCP and gRPC-go — on the same workloads, with both
// ends of every system in this one process over 127.0.0.1.
//
//	go -C examples/bench run . -scenario all -duration 3s -repeat 3
//	go -C examples/bench run . -scenario small -payload 512 -systems internode,raw-tcp-batched -json
//	go -C examples/bench run . -scenario latency -rate 5000 -chart latency.svg
//
// Each run starts a fresh system, runs the scenario's load for -warmup,
// measures for -duration, stops the load and drains: it waits (at most
// -drain) until every message sent has been delivered or reported failed,
// and reports the rest as lost. Repeats alternate over systems and the
// report shows medians. CPU per message is this process's user+sys time
// (getrusage) over the measured interval divided by the messages counted;
// it includes the harness and both ends. Writes per message come from
// internode's own counters and are null for the other systems.
//
// Closed-loop senders retry a Send refused for lack of capacity (internode's
// default ErrOverloaded) after a short sleep; refusals are not sent and show
// in the "rejected" column.
//
// The figures (JSON field, table column):
//
//   - msgs_per_sec: messages delivered (one-way: receiving handler ran;
//     request: correct echo returned) per second of the measured interval.
//   - mb_per_sec: payload bytes delivered per second, 10^6 bytes per MB.
//   - p50_us, p99_us, p999_us: request latency, null for one-way scenarios.
//   - lost: sent − delivered − failed after the drain, summed over repeats.
//
// # Extending
//
// A system implements System (system.go) — Start with Hooks, Send, Request,
// Close — and optionally WriteCounter and FailureCounter; add it to
// systemRegistry. An internode variant is one entry there; the opt-in
// internode-wait (run it with -systems internode,internode-wait) is
//
//	{Name: "internode-wait", OptIn: true, New: func() System {
//		return newInternode(func(c *transport.Config) { c.WaitForCapacity = true })
//	}},
//
// A scenario is a *Scenario (scenario.go) whose Load starts goroutines with
// Run.Go that loop until Run.Stopping, calling Run.Send or Run.Request (or
// Run.RequestAt for open-loop work) so that the harness counts every
// message; add it to scenarioRegistry. Targets and Chart say what the
// report compares and draws.
package main
