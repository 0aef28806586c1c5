// Command bench compares internode with the transports a user would pick
// instead — hand-rolled TCP and gRPC-go — on the same workloads, with both
// ends of every system in this one process over 127.0.0.1.
//
//	go -C examples/bench run . -scenario all -duration 3s -repeat 3
//	go -C examples/bench run . -scenario small -payload 512 -systems internode,raw-tcp-batched -json
//	go -C examples/bench run . -scenario latency -rate 5000 -chart latency.svg
//	go -C examples/bench run . -scenario coalesce -senders 64 -rate 100000
//	go -C examples/bench run . -scenario small -metrics-addr 127.0.0.1:9464   # curl http://127.0.0.1:9464/metrics
//	go -C examples/bench run . -scenario saturate -nodes 16 -out-node 32MiB -in-node 32MiB -repeat 1
//	go -C examples/bench run . -scenario idle -nodes 96 -repeat 1
//	go build -o /tmp/bench . && sudo /tmp/bench -scenario compress -repeat 3   # from examples/bench
//
// Each run starts a fresh system, runs the scenario's load for -warmup,
// measures for -duration, stops the load and drains: it waits (at most
// -drain) until every message sent has been delivered or reported failed,
// and reports the rest as lost. Repeats alternate over systems and the
// report shows medians. CPU per message is this process's user+sys time
// (getrusage) over the measured interval divided by the messages counted;
// it includes the harness and both ends.
//
// A Send or a closed-loop request refused for lack of capacity
// (internode's default ErrOverloaded) is tried again after a short sleep;
// an open-loop request so refused is left out. Refusals are not sent and
// show in the "rejected" column. A Send refused with another error is
// tried again the same way; those refusals show in the "send errors"
// column (send_errors).
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
// runs 49 (scenario, system) pairs three times: about 10 minutes on a
// 2-core machine, the 1 GiB file included. saturate, idle and compress are
// opt-in: all leaves them out; name them.
//
//   - small: one-way closed loop, 8 senders. Rows for every coalescing
//     strategy and internode-nometrics besides the base systems.
//   - reqresp: echo, 128 in flight.
//   - reqresp-slow: echo from a handler that takes 1 ms (a disk read), 256
//     in flight; internode runs the handler in a Concurrent(256) stage,
//     gRPC each call in its own goroutine. internode and grpc-unary only.
//   - latency: echo, open loop at -rate (2000)/s; every coalescing strategy.
//   - large: one-way -large-size (16 MiB), 2 senders.
//   - large-mixed: sizes at once — a 16 MiB and a 64 MiB sender flood while
//     a probe sends 1 MiB messages one at a time; p50/p99 are the probe's
//     (Send call to handler), showing whether a small large message waits
//     behind huge ones. internode's MaxMessageSize (32 MiB by default) and
//     its per-peer and node limits are raised to hold the largest message,
//     and its Send waits for capacity (WaitForCapacity) as the baselines'
//     senders wait for their writers: refused and retried, the 64 MiB
//     message would never find room among the 16 MiB ones.
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
//     transport.MaxLargeThreshold, the highest Validate accepts (256 KiB
//     less the largest message header: a small-lane message must fit in
//     one frame), and sends each 16 MiB message as 66 consecutive messages
//     of at most that less 64 bytes: all traffic on one socket.
//   - file: a -file-size (1 GiB) temp file sent again and again, one
//     transfer at a time, by internode (SendFile; the handler ReceiveTo's a
//     temp file), raw-sendfile and buffered-copy. Temp files are created in
//     os.TempDir ($TMPDIR) and unlinked at once, so nothing is left behind.
//   - saturate (opt-in): -nodes (4) nodes all to all, each with -senders
//     (4) unpaced senders that round-robin -payload (128 B) one-way
//     messages over the other nodes, each message a new slice stamped with
//     its send time and sender, for -warmup and then -duration (10 s
//     unless given). A send refused with ErrOverloaded is counted
//     (overloaded) and followed by a sleep of 10 µs, doubling to 250 µs
//     while refusals last; other errors likewise (send_errors). Then the
//     drain. Systems: internode at its default limits, or with those of
//     -out-node, -in-node, -per-peer and -per-conn (bytes, or 32MiB...; 0
//     keeps the default; -per-peer and -per-conn apply both ways; limits
//     too small for the default MaxMessageSize lower it to half of what
//     they hold); and raw-tcp-mesh, the batched plain-TCP mesh: one
//     connection per ordered pair, raw-tcp-batched's writer (one writer
//     goroutine writes whatever is pending whenever it is free; senders
//     wait while 64 KiB are pending) and a 64 KiB bufio.Reader, no other
//     limit. p50/p99 are the one-way delay from the send call (the stamp)
//     to the receiving handler, for messages sent in the measured interval.
//   - idle (opt-in): -nodes (16) internode nodes, IdleTimeout 1 s, or 2 ms
//     per ordered pair when that is more (no lane may idle out before the
//     last is open; a run checks that all were open when measured). The
//     retained memory (heap objects plus goroutine stacks, read through
//     runtime/metrics after two runtime.GC) and goroutines of the nodes
//     started with no traffic are the baseline. Then every node, one peer
//     at a time, sends each other node one urgent, one small and one
//     128 KiB (large lane) message and waits for their delivery; the
//     figures again, minus the baseline, per ordered pair: "open". Then,
//     once Stats shows no lane connected and no inbound connection (at
//     most IdleTimeout + 30 s), again: "closed". A run with N nodes holds 6·N·(N−1)
//     sockets: the child raises its limit on open files when it may (96
//     nodes: about 55000), or fails saying so.
//   - compress (opt-in, root only; skipped with a message otherwise): two
//     network namespaces joined by a veth pair whose ends are shaped with
//     tc tbf to 200 Mbit/s (burst 128 KiB, 20 ms of queue), so the link,
//     not the CPU, bounds a plain run, as between hosts. The receiver and
//     then the sender run as processes of this binary in them (ip netns
//     exec, hidden first argument -compress-peer), spoken to over their
//     stdin and stdout. The sender's -senders (8) goroutines send 1 KiB
//     one-way messages unpaced (Memory.WaitForCapacity), cycling through
//     4096 payloads: JSON documents such as a database replicates
//     (repeated field names, small vocabularies, random IDs and numbers)
//     or random bytes. Systems: json-off, json-auto, random-off,
//     random-auto (Lanes.Compression Off or Auto on every lane). msgs/s is
//     counted at the receiver; CPU per message adds both processes'
//     getrusage; wire/plain is the sender's compressed frame bytes per
//     byte they held (1 when none was compressed). After the measurement
//     the sender stops and the run waits (-drain) for every message sent
//     to arrive; the rest is lost. The namespaces are deleted at the end.
//
// # Runs in a child process
//
// saturate and idle measure the whole process, and a process that ran one
// system still holds its heap and its peak resident set, so each run of
// theirs is a fresh child process: the bench re-executes its own binary
// (os.Executable) with the hidden first argument -measure-in-child, the
// scenario, the system and the options in JSON; the child runs that one
// system and prints its result as one JSON line, which the parent reads
// (its stderr is the parent's). In the child, the peak resident set is the
// highest of /proc/self/status VmRSS, sampled every 50 ms, and VmHWM, which
// is reset first by writing "5" to /proc/self/clear_refs (when that is
// refused, VmHWM still covers only this child's life); the heap is
// runtime/metrics' /memory/classes/heap/objects:bytes (HeapAlloc: live
// objects and dead ones not yet swept), sampled at the same ticks. A
// test binary runs the same way: TestMain hands -measure-in-child to run.
// -cpuprofile, -trace and -metrics-addr see the parent only.
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
//     none; p50_idle_us, p99_idle_us: hol's idle phase. start_p50_us,
//     start_p99_us (start_p99_idle_us in the idle phase): the part of the
//     latency before the call, how late the open-loop pacer's timer fired.
//     service_p50_us, service_p99_us, service_p999_us
//     (service_p99_idle_us in the idle phase): the call alone, from the
//     Request or Send call to its response or its receiving handler.
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
//     saturate: failed are internode's messages dropped with a reason
//     (OnDropped at the sender, DroppedInbound at the receiver but on the
//     large lane, whose refusals both ends count and the sender reports).
//   - saturate: nodes; peak_rss_bytes and peak_heap_bytes (above);
//     rss_bound_bytes, the bound N × 64 MiB + 64 MiB, set only for
//     internode with Outbound.Node and Inbound.Node at most 32 MiB (else
//     its target reads n/a); node_limits_bytes, N × (Outbound.Node +
//     Inbound.Node); peak_counted_bytes, the highest sum over nodes of
//     Stats().OutboundBytes + InboundHeld, sampled with the heap every
//     50 ms, and counted_heap_ratio, the sum of those samples over the sum
//     of the heap objects read with them (from the first GC on) — the
//     share of the heap the transport accounts for, averaged over the run
//     (the heap includes garbage awaiting the next GC, up to GOGC% of the
//     live heap, so counted_live_ratio divides by the live heap the last
//     GC found instead); peak_held_bytes, the highest sum of every
//     connection's PendingBytes + InboundHeld (the same bytes, seen per
//     lane); overloaded. raw-tcp-mesh counts nothing:
//     its internode figures are null.
//   - idle: nodes, pairs (N·(N−1)); open_bytes_per_pair,
//     open_stack_bytes_per_pair (of it, goroutine stacks),
//     open_goroutines_per_pair, and the same closed_...; medians over
//     repeats.
//
// Each target is a ratio to a baseline system (or, for hol, to the same
// system's idle figure), a difference (coalesce p99: at most Disabled's
// + 1 ms) or an absolute bound (overload lost = 0; saturate counted / heap
// ≥ 0.8; idle KiB per pair); reported, not asserted.
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
// # A packet-capped link (the link command)
//
// Coalescing pays most where the packet rate, not the CPU, binds (the seed's
// case: a hypervisor's NIC). "bench link" emulates such a link with network
// namespaces, veth pairs and a tbf qdisc; it needs root, iproute2 and
// ethtool (apt-get install iproute2 ethtool) and fails with a message
// otherwise:
//
//	sudo go run . link                      # everything, 3 repeats: ~10 min
//	sudo go run . link -topology router -workloads rr16,rr64 -systems adaptive,disabled,fixed,raw-nagle
//
// Two topologies (link_netns.go draws them): "router", three namespaces in
// a line (sender, router with IP forwarding, receiver) with the cap on the
// router's egress toward the receiver, so the queue builds where the
// sender cannot see it; and "veth", one pair with the cap on the sender's
// own side, where TCP's small-queue logic and autocorking see it. The cap
// (-pps, default 10000 packets/s) is tbf with mpu 2000 bytes and rate
// pps × 2000 bytes/s: every packet is billed 2000 bytes, more than a full
// frame, so the qdisc passes at most pps packets a second whatever their
// size. TSO, GSO and GRO are off on every veth (this kernel has no netem).
// Namespaces carry a random suffix and are deleted at the end, on failure
// and on an interrupt.
//
// Each cell (topology, workload, system) runs two fresh processes of this
// command, the receiver in its namespace and the sender in its own (ip
// netns exec), so every byte crosses the link. Workloads (-workloads):
// rrN is 128-byte request/response with N in flight; owR one-way at R
// messages/s (owRx: R × pps) from 4 paced senders; @B sets the payload.
// Systems (-systems): each coalescing strategy (internode with it on both
// ends' small and large lanes), raw-nagle and raw-nodelay (one TCP
// connection, one Write per message, Nagle on or off). The table shows,
// as medians of -repeat runs interleaved (for r in repeats: for w in
// workloads: for s in systems): msgs/s (answered requests, or one-way
// messages delivered, in the window), the ratio to Disabled and to the
// best other coalescing strategy (the raw sockets are the bar beyond),
// packets the sender's veth sent per message (its tx_packets counter),
// p50 and p99 (request round trips; one-way: from the
// intended send time to the receiving handler, both processes reading one
// clock), and for internode the small lane's mean requested and observed
// coalescing wait.
//
// With -record DIR the sender of each internode cell also writes the
// arrivals its small lane's strategy was shown — each message's enqueue
// time and encoded size, the first 50 000 of each connection — to
// DIR/repeatN/TOPOLOGY-WORKLOAD-SYSTEM-K.arrivals, as text: comment
// lines, then "gap_ns size" a line (link_record.go). Gzipped, such traces
// are coalescing/testdata, which TestAdaptiveRecordedTraces replays.
//
// # Profiles and traces
//
// -cpuprofile FILE writes a CPU profile of the whole run (go tool pprof),
// -trace FILE a runtime execution trace (go tool trace; about 1 MB for
// a second of small messages). The tracestat command sums a trace by
// goroutine role — the function each goroutine was started with: time
// running, runnable (ready but waiting for a processor), in system calls
// and blocked, how long a goroutine made runnable waited to run, and its
// turns: from its first run after being woken until it blocks or exits,
// the median turn and the median time of a turn in system calls:
//
//	go -C examples/bench run . -scenario small -systems internode -repeat 1 -duration 1s -warmup 300ms -trace /tmp/small.trace
//	go -C examples/bench run ./tracestat /tmp/small.trace
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
//		return newInternode(func(c *transport.Config) { c.Memory.WaitForCapacity = true })
//	}},
//
// A scenario that measures the whole process sets Measure instead of Load
// (see saturate): it runs in a child process, against the meshes of
// meshRegistry (mesh.go: N nodes all to all), and builds its own Result.
//
// A scenario is a *Scenario (scenario.go) whose Load starts goroutines with
// Run.Go that loop until Run.Stopping, calling Run.Send, Run.Request,
// Run.RequestAt (open loop) or Run.SendFile so that the harness counts
// every message; Run.OnDeliver, Run.Background and Run.OnResult add
// receiver hooks, pollers and figures of its own. Add it to
// scenarioRegistry. Targets, Columns and Chart say what the report compares,
// prints and draws.
package main
