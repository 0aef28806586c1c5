// Package coalescing holds the per-connection policies that decide how long a
// connection's writer waits to gather small messages into one write.
//
// Coalescing trades a little latency for fewer writes: fewer syscalls and
// packets per message, which Ariel Weisberg's article "Performance doubling
// with message coalescing" (DataStax developer blog, 4 May 2015; the work of
// CASSANDRA-8692) found can double throughput where packet processing, not
// CPU, is the bottleneck. Where this package says "the article", it means
// that one. It can also just add latency: Cassandra 2.2's default,
// TimeHorizon, was reverted as a regression (CASSANDRA-12676) and Cassandra
// 4.0 ships coalescing disabled. So every strategy here reports what it did
// (Stats), and the project's default, Adaptive, has to earn its waits.
//
// # Using a strategy
//
// Strategies are pure: time is passed in, nothing here reads a clock, sleeps
// or owns a goroutine. A Strategy serves one connection and is called only
// from that connection's writer goroutine; none is safe for concurrent use.
// The writer's duties, per write:
//
//  1. Call Observe(enqueuedAt, size) for each message it takes from its queue.
//  2. Call Wait(now, pendingMessages, pendingBytes) and wait at most that
//     long for more messages (zero: write now), observing those that arrive.
//     It may ask again as messages arrive; answers before the next Flushed
//     share the first answer's deadline, so a write never waits longer in
//     total than the strategy's window.
//  3. Write, then call Flushed(now, messages, bytes, requested, observed)
//     with the wait it asked for and the wait that really passed.
//
// Configuration names a strategy: ByName("adaptive", window) returns a
// Factory, called once per connection.
//
// # Strategies
//
// The first four are Cassandra's otc_coalescing_strategy values, with the
// article's algorithms; window is otc_coalescing_window_us, default 200 µs.
//
//   - Disabled never waits; messages that queue during a write go out
//     together in the next. The baseline.
//   - Fixed waits its whole window before every write that holds fewer than
//     EnoughMessages. For experiments: every message pays the window.
//   - MovingAverage keeps the mean of the last 16 gaps between messages and
//     waits only when that would roughly double the batch: pending × gap must
//     fit in the window, and the wait is doubled while twice it still fits.
//   - TimeHorizon applies the same doubling rule to a gap taken from message
//     counts in 16 periods of about 64 ms, so it reacts within seconds, not
//     messages.
//   - Adaptive (the default) flushes early when a frame's worth is pending,
//     never waits on sparse traffic, ends a wait once waiting stops bringing
//     messages, tunes its window from what waiting actually gained, and
//     tries, now and then, whether waiting raises throughput (a link whose
//     packet rate binds) or lowers it (a closed loop that only waits).
//
// Use Adaptive unless measurements say otherwise. Use Disabled when every
// microsecond of latency counts, or as the baseline in a benchmark. Use
// Fixed, MovingAverage and TimeHorizon to reproduce Cassandra's behaviour
// for comparison; they know nothing of bytes, so none of them stops waiting
// when a frame is full.
//
// # The Adaptive algorithm
//
//  1. Observe keeps the mean of the last 16 gaps between messages (gaps not
//     yet seen count as about 2 s, so a new connection is sparse), a moving
//     average of message sizes, and a moving average of the gaps between
//     messages that arrive while a wait is in progress.
//  2. Wait returns zero when FlushBytes (64 KiB) or FlushMessages (128) are
//     pending: a full frame gains nothing from waiting.
//  3. Wait returns zero when the window is zero or the average gap exceeds
//     MaxWindow: not one more message is expected even in the longest wait,
//     so at low load Adaptive is Disabled, latency included.
//  4. Otherwise Wait returns the current window, or, if sooner, twice the
//     time the batch needs to fill at the current rate (twice, because
//     arrivals are irregular; a writer that asks again stops at the
//     threshold anyway). That sets the write's deadline.
//  5. Each answer is also cut at the idle bound: eight usual gaps between
//     arrivals during waits (at least MaxWindow/32) after the last arrival.
//     When no message comes for that long, waiting has stopped bringing
//     messages: a closed-loop sender (a fixed number of requests in flight)
//     whose messages are all pending writes them then, instead of waiting
//     for a count it can never reach. The silence that ended a wait counts
//     as a gap too, so the bound can grow when the traffic slows.
//  6. Flushed judges each write that followed a wait: gained is the messages
//     written minus those pending when the wait began (the write it would
//     have been), promised is the observed wait divided by the average gap
//     (what the arrival rate predicted for the time really spent).
//  7. Every 8 such writes the window moves. The waits paid if, summed over
//     the 8, gained ≥ MinGrowth × waits (each brought a message more, by
//     default) and gained ≥ promised/2 (the time was not spent idle). If
//     they paid the window grows by a quarter, up to MaxWindow (200 µs); if
//     not it halves, and below MaxWindow/32 it drops to zero. Increase
//     gently, decrease fast: latency is what waiting spends.
//  8. At window zero Adaptive cannot learn by waiting, so it probes: after 64
//     writes at zero on a connection that is not sparse, it tries
//     MaxWindow/4 for one period. A failed probe returns to zero and doubles
//     the interval before the next (up to 4096 writes); a probe that pays
//     grows from there. A new Adaptive starts on such a probe. A probe
//     whose first four waits all gathered nothing fails then (see step 9).
//  9. Batches alone cannot tell whether waiting pays: a closed loop gathers
//     more the longer it waits whatever the network, but only where the
//     packet rate binds does a fuller packet make the round trip faster,
//     and that only shows after a long wait (at window zero every message
//     takes a packet of its own and the loop runs at the packet rate). So
//     every 256 writes (doubling while trials confirm the current state, up
//     to 16384) Adaptive measures its messages per second over 32 writes,
//     switches to the opposite extreme (zero, or MaxWindow from zero), lets
//     32 writes pass and measures again. A rate 15% higher or lower pins the
//     window: at MaxWindow if waiting raised throughput, at zero if it
//     lowered it. Otherwise the window goes back and steps 6–8 go on.
//     A rate taken over writes at which the connection was sparse follows
//     the traffic, not the window: no trial starts on one, and a trial
//     that meets one is called off, the window back where it was.
//     A trial that raised the window from zero to MaxWindow and whose
//     first four waits all gathered nothing pins zero then: those waits
//     only delayed their writes, and a loop that no wait can help (one
//     request in flight: the one message that could come is the one
//     being written) only slows. Open-loop traffic at the sparse
//     boundary ends about one trial in 55 this way.
//  10. Pinned at MaxWindow, Wait may also return zero once one more message
//     of the average size would overflow PacketBytes (1448), and its idle
//     bound (step 5) may end a wait: where the packet rate binds, a full
//     packet should go at once, and a closed loop whose messages have all
//     come has nothing to wait for. (There the bound counts eight of this
//     wait's own gaps once two messages came during it: answers arrive a
//     packet at a time, and the usual gap, which holds the pauses between
//     packets, would wait out the next.) Whether they pay is the question of a
//     second trial, run as soon as the window is pinned there: the rate
//     with these early exits and without them (waits then last the window
//     unless a frame fills), twice each in turn, each over 32 writes and
//     at least 10 ms after as many to settle. The exits stay unless the
//     rate without them is more than 5% higher, as on loopback, where
//     waiting pays in system calls and wake-ups and neither a packet's
//     worth of bytes nor a pause is a reason to end a batch. Rates over a
//     few tens of milliseconds may mislead, so the exit trial runs again
//     1 s after it decided, then 2, 4, up to 16 s while it keeps deciding
//     the same (back to 1 s when it changes its mind). The pin is
//     released when a period of waits brings fewer than MinGrowth messages
//     each; window trials no longer
//     run from there, since a trial at zero would collapse the loop it
//     measures. Pinned at zero, only trials run; a trial due on a rate
//     period with a lull (bursts a few milliseconds apart put one in
//     every period) releases the pin to steps 6–8 instead, so no state
//     is final.
//
// Stats.Window shows the tuned window; WindowGrowths and WindowShrinks count
// its moves.
//
// # Proof
//
// That Adaptive is better than Disabled is the project's claim, not the
// article's, and the tests here cannot prove it: they prove the policy does what
// this page says, on recorded open-loop traces and on simulated closed loops
// over a packet-capped link (adaptive_sim_test.go). The proof is the bench
// (examples/bench): the coalesce scenario reports write syscalls, CPU and
// tail latency per message against Disabled, and the link command runs every
// strategy, a Nagle socket and a NODELAY socket over a packet-capped link in
// network namespaces.
package coalescing
