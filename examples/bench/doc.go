// Command bench compares internode with the transports a user would pick
// instead — hand-rolled TCP and gRPC-go — on the same workloads, with both
// ends of every system in this one process over 127.0.0.1.
//
//	go -C examples/bench run . -scenario all -duration 3s -repeat 3
//	go -C examples/bench run . -scenario small -payload 512 -systems internode,raw-tcp-batched -json
//	go -C examples/bench run . -scenario latency -rate 5000 -chart latency.svg
//	go -C examples/bench run . -scenario coalesce -senders 64 -rate 100000
//	go -C examples/bench run . -scenario small -metrics-addr 127.0.0.1:9464   # curl http://127.0.0.1:9464/metrics
//
// Each run starts a fresh system, runs the scenario's load for -warmup,
// measures for -duration, stops the load and drains: it waits (at most
// -drain) until every message sent has been delivered or reported failed,
// and reports the rest as lost. Repeats alternate over systems and the
// report shows medians. CPU per message is this process's user+sys time
// (getrusage) over the measured interval divided by the messages counted;
// it includes the harness and both ends.
//
// Closed-loop senders retry a Send refused for lack of capacity (internode's
// default ErrOverloaded) after a short sleep; refusals are not sent and show
// in the "rejected" column.
//
// Open-loop scenarios (latency, coalesce, hol) measure latency from each
// message's intended send time, so a scheduler that falls behind cannot hide
// a stall. Their pacers sleep with Go timers, which on an idle Linux process
// wake up to about 1 ms late (the runtime's poller sleeps in whole
// milliseconds): at low rates that lateness, the same for every system, is
// part of p50/p99; the service time (svc p50, from the call) is not.
//
// # Scenarios and their systems
//
// Each scenario runs its own list of systems unless -systems names others
// ("all": every system it can run). -scenario all at -duration 3s -repeat 3
// runs 46 (scenario, system) pairs three times: about 10 minutes on a
// 2-core machine, the 1 GiB file included.
//
//   - small: one-way closed loop, 8 senders. Rows for every coalescing
//     strategy and internode-nometrics besides the base systems.
//   - reqresp: echo, 128 in flight.
//   - latency: echo, open loop at -rate (2000)/s; every coalescing strategy.
//   - large: one-way -large-size (16 MiB), 2 senders.
//   - large-mixed: sizes at once — a 16 MiB and a 64 MiB sender flood while
//     a probe sends 1 MiB messages one at a time; p50/p99 are the probe's
//     (Send call to handler), showing whether a small large message waits
//     behind huge ones.
//   - coalesce: one-way, -senders (64) open-loop senders at -rate (100000)
//     messages/s in total; latency from the intended send time, stamped in
//     the payload, to the receiving handler (one-way, timed in-process).
//     Systems internode (Adaptive) and internode-disabled, -fixed,
//     -movingavg, -timehorizon.
//   - overload: the receiving handler is held for the whole run while 4
//     senders flood; limits 4 MiB per connection, 16 MiB per peer and node,
//     both ways; at the end the handler is released and the run drains.
//     internode only: raw-tcp-naive runs its handler on its reader, so a
//     held handler stops reading and TCP bounds it as well — it is not the
//     unbounded baseline it would seem, and the other baselines have no
//     inbound accounting to compare.
//   - hol: 128 B echo requests open loop at -rate (2000)/s, measured alone
//     (idle p50/p99) and then while 2 senders stream 16 MiB messages to the
//     same peer. internode-single-lane is internode with LargeThreshold at
//     256 KiB, the highest that works (Validate accepts up to 1 MiB, but a
//     small-lane message above the 256 KiB frame limit is refused by the
//     receiver), and sends each 16 MiB message as 64 consecutive messages
//     of 256 KiB minus the largest header: all traffic on one socket.
//   - file: a -file-size (1 GiB) temp file sent again and again, one
//     transfer at a time, by internode (SendFile; the handler ReceiveTo's a
//     temp file), raw-sendfile and buffered-copy. Temp files are created in
//     os.TempDir ($TMPDIR) and unlinked at once, so nothing is left behind.
//
// # Figures
//
// JSON field, table column:
//
//   - msgs_per_sec: messages delivered (one-way: receiving handler ran;
//     request: correct echo returned; file: transfer acknowledged) per
//     second of the measured interval.
//   - mb_per_sec: payload bytes delivered per second, 10^6 bytes per MB.
//     The file scenario times each transfer started in the window instead
//     (a window holds few 1 GiB transfers): bytes over their summed
//     durations, and cpu_s_per_gb, CPU seconds over their bytes.
//   - p50_us, p99_us, p999_us: latency, null for scenarios that measure
//     none; p50_idle_us, p99_idle_us: hol's idle phase.
//   - writes_per_msg: write system calls per message, as the kernel counts
//     them for the whole process (/proc/self/io syscw: write(2), writev(2);
//     both ends' socket writes and the Go runtime's rare eventfd wake-ups),
//     for every system alike. vectored_writes_per_msg is internode's own
//     count (ConnStats.Writes): one per net.Buffers.WriteTo. That is one
//     writev(2) only on a bare *net.TCPConn; the transport hands WriteTo its
//     own connection wrapper, so Go writes each buffer with its own write(2)
//     — a frame header, then its payload: strace shows no writev at all —
//     and the syscall count is twice the frames, not once per "write".
//   - peak_inbound_bytes (the receiver's Stats().InboundHeld, polled every
//     millisecond), inbound_limit_bytes (what bounds it: PerConnection ×
//     inbound connections + min(PerPeer, Node)), peak_heap_bytes (HeapAlloc,
//     read through runtime/metrics without stopping the world; both ends),
//     overloaded (sends refused with ErrOverloaded): overload only.
//   - lost: sent − delivered − failed after the drain, summed over repeats.
//
// Each target is a ratio to a baseline system (or, for hol, to the same
// system's idle figure), a difference (coalesce p99: at most Disabled's
// + 1 ms) or an absolute bound (overload lost = 0); reported, not asserted.
//
// # Metrics
//
// Every internode system but internode-nometrics gives its two transports
// an OpenTelemetry SDK MeterProvider (a ManualReader nobody collects) with
// socket measurement on: the overhead a user with metrics pays, which small
// compares with internode-nometrics (no-op provider,
// DisableSocketMeasurement). With -metrics-addr host:port the reader is the
// OpenTelemetry Prometheus exporter instead, served at /metrics for the
// duration of the command, series labelled node="a" or "b"; it shows the
// system running at the time.
//
// # Extending
//
// A system implements System (system.go) — Start with Hooks, Send, Request,
// Close — and optionally WriteCounter, FailureCounter and FileSender; add
// it to systemRegistry and name it in the scenarios' Systems lists. An
// internode variant is one entry there; the opt-in internode-wait (run it
// with -systems internode,internode-wait) is
//
//	{Name: "internode-wait", OptIn: true, New: func() System {
//		return newInternode(func(c *transport.Config) { c.WaitForCapacity = true })
//	}},
//
// A scenario is a *Scenario (scenario.go) whose Load starts goroutines with
// Run.Go that loop until Run.Stopping, calling Run.Send, Run.Request,
// Run.RequestAt (open loop) or Run.SendFile so that the harness counts
// every message; Run.OnDeliver, Run.Background and Run.OnResult add
// receiver hooks, pollers and figures of its own. Add it to
// scenarioRegistry. Targets, Columns and Chart say what the report compares,
// prints and draws.
package main
