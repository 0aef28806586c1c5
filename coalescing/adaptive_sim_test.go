package coalescing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// On sparse traffic (every gap ≥ 1 ms, five times MaxWindow) Adaptive never
// waits, so every message sees exactly the latency it sees with Disabled.
func TestAdaptiveSparseNeverWaits(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trace := range 20 {
		arrivals := make([]arrival, 1000)
		at := t0
		for i := range arrivals {
			at = at.Add(time.Millisecond + time.Duration(rng.Int64N(int64(9*time.Millisecond))))
			arrivals[i] = arrival{at: at, size: 1 + rng.IntN(4096)}
		}
		a := NewAdaptive(AdaptiveConfig{})
		asks, writes := simulateWriter(a, arrivals, us(20))
		for i, ask := range asks {
			require.Zero(t, ask.answer, "trace %d ask %d", trace, i)
		}
		assert.Zero(t, a.Stats().Waited)

		_, baseline := simulateWriter(NewDisabled(), arrivals, us(20))
		require.Len(t, writes, len(baseline))
		for i := range writes {
			require.Equal(t, baseline[i].latency, writes[i].latency, "trace %d write %d", trace, i)
		}
	}
}

// On dense open-loop traffic (exponential gaps, mean 5µs, small messages)
// waiting pays, so after warm-up the window stays in a band near MaxWindow
// (but during throughput trials) and batches are far larger than
// Disabled's.
func TestAdaptiveDenseConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const warmUp = 100 // writes; the window reaches MaxWindow in 7 periods of 8
	for trace := range 4 {
		arrivals := poissonTrace(rng, 25_000, us(5), 50, 200)
		a := NewAdaptive(AdaptiveConfig{})
		_, writes := simulateWriter(a, arrivals, us(10))
		require.Greater(t, len(writes), 4*warmUp)
		// Throughput trials set the window to zero for two rate periods
		// now and then; open-loop traffic writes as fast either way, so the
		// trial ties and the window comes back.
		outside := 0
		for _, w := range writes[warmUp:] {
			require.LessOrEqual(t, w.window, DefaultWindow)
			if w.window < DefaultWindow/2 {
				outside++
			}
		}
		assert.Less(t, outside, len(writes)/10, "trace %d: writes outside the band", trace)
		assert.GreaterOrEqual(t, writes[len(writes)-1].window, DefaultWindow/2, "trace %d", trace)
		_, baseline := simulateWriter(NewDisabled(), arrivals, us(10))
		s := a.Stats()
		perWrite := float64(s.Messages) / float64(s.Writes)
		assert.Greater(t, perWrite, 4*float64(len(arrivals))/float64(len(baseline)), "trace %d", trace)
		assert.Greater(t, perWrite, 25.0, "trace %d", trace)
	}
}

// On dense traffic of 4 KiB messages a frame fills in about 16 messages:
// Wait answers zero whenever 64 KiB are pending, and writes end early, well
// before the window, carrying about a frame.
func TestAdaptiveFlushesFullFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	arrivals := poissonTrace(rng, 20_000, us(5), 4096, 4096)
	a := NewAdaptive(AdaptiveConfig{})
	asks, writes := simulateWriter(a, arrivals, us(10))
	for i, ask := range asks {
		if ask.pendingBytes >= DefaultFlushBytes {
			require.Zero(t, ask.answer, "ask %d", i)
		}
	}
	s := a.Stats()
	assert.Greater(t, s.EarlyFlushes, s.Writes/2)
	assert.Greater(t, float64(s.Bytes)/float64(s.Writes), 56.0*1024, "about a frame a write")
	assert.Less(t, s.ObservedWait/time.Duration(s.Writes), DefaultWindow/2, "waits end at the frame, not the window")
	full := 0
	for _, w := range writes {
		if w.bytes >= DefaultFlushBytes {
			full++
		}
	}
	assert.Greater(t, full, len(writes)/2)
}

// When waiting never grows batches (closed-loop traffic: the next messages
// wait for the answers to these), the window shrinks to zero and stays there
// but for rare probes. The writer reports one message per write however long
// it waited, while arrivals look dense (1µs gaps).
func TestAdaptiveShrinksWhenWaitingDoesNotPay(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for d.a.Stats().Window < DefaultWindow { // first make waiting pay
		d.period(1, 41, us(40))
	}
	require.Equal(t, DefaultWindow, d.a.Stats().Window)

	var windows []time.Duration
	var waited int
	const writes = 20_000
	for i := range writes {
		w := d.write(1, 1, d.a.Stats().Window)
		if i >= writes/2 && w > 0 {
			waited++
		}
		windows = append(windows, d.a.Stats().Window)
	}
	// Halving every period: 200 → 100 → 50 → 25 → 12.5 → 6.25 → 0 µs.
	for i := 1; i < 6*adaptivePeriodWrites; i++ {
		require.LessOrEqual(t, windows[i], windows[i-1], "write %d", i)
	}
	assert.Zero(t, windows[6*adaptivePeriodWrites-1], "zero after six periods")
	assert.Less(t, float64(waited)/float64(writes/2), 0.01, "probes only")
	assert.Zero(t, windows[len(windows)-1])
}

// closedLoopCases are closed-loop senders at several in-flight counts, on
// a link whose packet rate binds (10 000 packets/s, 1448-byte packets, as
// the bench's link command emulates) and on one without a cap.
func closedLoopCases() map[string]closedLoop {
	cases := map[string]closedLoop{}
	for _, n := range []int{1, 16, 64, 256} {
		capped := closedLoop{inFlight: n, size: 150, mss: 1448, packetTime: us(100), returnDelay: us(150), writeCost: us(5),
			serviceTime: us(2), jitter: us(10), span: time.Second, seed: uint64(n)}
		uncapped := capped
		uncapped.packetTime, uncapped.returnDelay = 0, us(40)
		if n == 256 {
			uncapped.span = 300 * time.Millisecond // millions of messages a second: keep the test fast
		}
		cases[fmt.Sprintf("capped/%d", n)] = capped
		cases[fmt.Sprintf("uncapped/%d", n)] = uncapped
	}
	return cases
}

// Closed-loop senders: where the packet rate binds, Adaptive finds that
// waiting raises throughput and writes full packets (at 16 in flight and
// more, ≥ 4× Disabled and ≥ 0.85× Fixed, which always waits its window
// and stops at 8 messages, about a packet); where it does not, or with one
// request in flight, waiting only delays, and Adaptive stays within 10% of
// Disabled. The figures are the second half of a simulated second.
func TestAdaptiveClosedLoop(t *testing.T) {
	for name, l := range closedLoopCases() {
		t.Run(name, func(t *testing.T) {
			adaptive := simulateClosedLoop(NewAdaptive(AdaptiveConfig{}), l)
			disabled := simulateClosedLoop(NewDisabled(), l)
			fixed := simulateClosedLoop(NewFixed(DefaultWindow), l)
			ratio := adaptive.perSecond(l.span) / disabled.perSecond(l.span)
			t.Logf("adaptive %.0f/s = %.2f× disabled, %.2f× fixed; %.2f packets a message; window %v",
				adaptive.perSecond(l.span), ratio, adaptive.perSecond(l.span)/fixed.perSecond(l.span),
				float64(adaptive.packets)/float64(adaptive.messages), adaptive.stats.Window)
			if l.packetTime > 0 && l.inFlight >= 16 {
				assert.GreaterOrEqual(t, ratio, 4.0)
				assert.GreaterOrEqual(t, adaptive.perSecond(l.span), 0.85*fixed.perSecond(l.span))
				return
			}
			assert.GreaterOrEqual(t, ratio, 0.9)
		})
	}
}

// The state the issue found Adaptive stuck in: window zero on a
// closed-loop connection whose average gap (140 µs) is above the probe
// window (50 µs), over a packet-capped link. Waiting there brings only a
// fraction of a message, so the gains rule alone never widens; a
// throughput trial at MaxWindow shows the loop speeding up and pins it.
func TestAdaptiveLeavesZeroWhenPacketsBind(t *testing.T) {
	l := closedLoopCases()["capped/64"]
	a := NewAdaptive(AdaptiveConfig{})
	a.window, a.probing = 0, false
	res := simulateClosedLoop(a, l)
	assert.Equal(t, pinWait, a.pin)
	assert.Equal(t, DefaultWindow, a.window)
	assert.Greater(t, res.perSecond(l.span), 5*simulateClosedLoop(NewDisabled(), l).perSecond(l.span))
}

// Pinned at MaxWindow without its early exits where packets bind — a state
// a misleading early-exit trial once left it in for good, every wait
// running out the window (the veth link at 16 in flight: 0.66× Fixed) —
// Adaptive tries the exits again a second after deciding, takes them
// back, and in the last two of four simulated seconds writes as fast as
// an Adaptive that kept them from the start.
func TestAdaptiveRetriesItsEarlyExits(t *testing.T) {
	l := closedLoopCases()["capped/16"]
	l.span = 4 * time.Second
	a := NewAdaptive(AdaptiveConfig{})
	a.pin, a.earlyExits, a.window, a.probing = pinWait, false, DefaultWindow, false
	a.exitsDecided, a.exitsRecheck = t0, adaptiveMinRecheck
	stuck := simulateClosedLoop(a, l)
	kept := simulateClosedLoop(NewAdaptive(AdaptiveConfig{}), l)
	t.Logf("from the stuck state %.0f/s, from scratch %.0f/s", stuck.perSecond(l.span), kept.perSecond(l.span))
	assert.True(t, a.earlyExits, "the exits are back")
	assert.GreaterOrEqual(t, stuck.perSecond(l.span), 0.95*kept.perSecond(l.span))
}

// A wait ends once waiting stops bringing messages: after a burst of
// arrivals 1 µs apart, the writer may wait 8 µs past the last one (eight
// usual gaps), not the whole window.
func TestAdaptiveIdleBound(t *testing.T) {
	a := NewAdaptive(AdaptiveConfig{})
	a.trialInterval = math.MaxInt
	now := observeGaps(a, repeat(16, us(1)), 100)
	require.Equal(t, us(50), a.Wait(now, 1, 100), "first ask: the window, no gap seen during a wait yet")
	for range 10 {
		now = now.Add(us(1))
		a.Observe(now, 100)
		a.Wait(now, 2, 200)
	}
	assert.Equal(t, us(1), a.waitGapAvg)
	assert.Equal(t, us(8), a.Wait(now, 12, 1200), "eight gaps")
	assert.Equal(t, us(1), a.Wait(now.Add(us(7)), 12, 1200))
	assert.Zero(t, a.Wait(now.Add(us(8)), 12, 1200), "silence: write now")
}

// A closed loop on a link without a packet cap whose receiver pays for
// every write (loopback: system calls and wake-ups, not packets, are what
// a batch saves). Waiting pays, so a trial pins the window at MaxWindow;
// the early-exit trial then finds that ending batches at a packet's worth
// of bytes lowers the rate, and drops the early exits: Adaptive is within
// 10% of an Adaptive whose packet exit can never fire. Where packets bind
// with a packet or two in flight (capped/16) the exits stay; with more
// (capped/64) waiting out the window fills packets too, and whichever the
// trial keeps, Adaptive is within 10% of the better.
func TestAdaptiveEarlyExitsOnlyWherePacketsBind(t *testing.T) {
	syscalls := closedLoop{inFlight: 256, size: 150, mss: 1448, returnDelay: us(20), writeCost: us(5),
		recvWriteCost: us(15), serviceTime: us(0.5), jitter: us(10), span: 300 * time.Millisecond, seed: 3}
	a := NewAdaptive(AdaptiveConfig{})
	adaptive := simulateClosedLoop(a, syscalls)
	noExit := simulateClosedLoop(NewAdaptive(AdaptiveConfig{PacketBytes: DefaultFlushBytes}), syscalls)
	disabled := simulateClosedLoop(NewDisabled(), syscalls)
	t.Logf("syscall-bound: adaptive %.0f/s (%.1f a write), without the exit %.0f/s (%.1f), disabled %.0f/s (%.1f)",
		adaptive.perSecond(syscalls.span), float64(adaptive.stats.Messages)/float64(adaptive.stats.Writes),
		noExit.perSecond(syscalls.span), float64(noExit.stats.Messages)/float64(noExit.stats.Writes),
		disabled.perSecond(syscalls.span), float64(disabled.stats.Messages)/float64(disabled.stats.Writes))
	assert.Equal(t, pinWait, a.pin)
	assert.False(t, a.earlyExits)
	assert.GreaterOrEqual(t, adaptive.perSecond(syscalls.span), 0.9*noExit.perSecond(syscalls.span))

	for _, name := range []string{"capped/16", "capped/64"} {
		l := closedLoopCases()[name]
		a := NewAdaptive(AdaptiveConfig{})
		capped := simulateClosedLoop(a, l)
		noExit := simulateClosedLoop(NewAdaptive(AdaptiveConfig{PacketBytes: DefaultFlushBytes}), l)
		t.Logf("%s: adaptive %.0f/s, without the exit %.0f/s, early exits %v", name, capped.perSecond(l.span), noExit.perSecond(l.span), a.earlyExits)
		assert.Equal(t, pinWait, a.pin, name)
		assert.GreaterOrEqual(t, capped.perSecond(l.span), 0.9*noExit.perSecond(l.span), name)
		if name == "capped/16" {
			assert.True(t, a.earlyExits, name)
		}
	}
}

// Pinned with its early exits (packets bind), a wait's own pace sets the
// idle bound: the answers to a closed loop come a packet at a time, so
// the usual gap (100 µs here) holds the pauses between packets, and eight
// of them would wait out the next packet for messages the loop holds
// back. After a burst of five messages 2 µs apart the wait ends 16 µs
// after the last, not 800.
func TestAdaptiveIdleBoundFollowsTheBurstWherePacketsBind(t *testing.T) {
	a := NewAdaptive(AdaptiveConfig{PacketBytes: DefaultFlushBytes}) // no packet exit: the idle bound alone
	a.trialInterval = math.MaxInt
	now := observeGaps(a, repeat(16, us(1)), 100)
	a.pin, a.earlyExits, a.window, a.probing = pinWait, true, DefaultWindow, false
	a.waitGapAvg = us(100)
	require.Equal(t, DefaultWindow, a.Wait(now, 1, 100), "no arrival during this wait yet: the window")
	for i := range 5 {
		now = now.Add(us(2))
		a.Observe(now, 100)
		a.Wait(now, 2+i, 100*(2+i))
	}
	assert.Equal(t, us(16), a.Wait(now, 6, 600), "eight of this wait's 2 µs gaps")
	assert.Zero(t, a.Wait(now.Add(us(16)), 6, 600))

	// Unpinned, the usual gap still rules: an open-loop sender's waits
	// are not cut at the first pause.
	a.pin = pinNone
	assert.Greater(t, a.Wait(now.Add(us(16)), 6, 600), us(100))
}

// A window pinned at zero is left only by a throughput trial, and no trial
// starts on a rate period with a lull in it. A connection pinned by one
// request in flight (each wait only delays the one message there is) that
// then carries bursts a few milliseconds apart (100 messages 2 µs apart,
// about 21 writes a burst at window zero) has a lull in every period, so
// its pin held for good: it wrote 4.8 messages a write where an Adaptive
// that never saw the first load writes about 20, for as long as the
// bursts went on. A trial that is due but meets a lull releases the pin
// to the gains rule, whose probes count only the writes that are not
// sparse.
func TestAdaptivePinnedZeroIsReleasedOnLulls(t *testing.T) {
	l := closedLoopCases()["uncapped/1"]
	l.span = 250 * time.Millisecond
	a := NewAdaptive(AdaptiveConfig{})
	simulateClosedLoop(a, l)
	require.Equal(t, pinNoWait, a.pin, "one request in flight: waiting only slows it")

	var arrivals []arrival
	at := t0.Add(time.Second)
	for range 2000 {
		for range 100 {
			at = at.Add(us(2))
			arrivals = append(arrivals, arrival{at: at, size: 100})
		}
		at = at.Add(4 * time.Millisecond)
	}
	before := a.Stats()
	_, writes := simulateWriter(a, arrivals, us(10))
	_, fresh := simulateWriter(NewAdaptive(AdaptiveConfig{}), arrivals, us(10))
	after := a.Stats()
	t.Logf("bursts after the pin: %d writes (an Adaptive that never saw the first load: %d), %d waits",
		len(writes), len(fresh), after.Waited-before.Waited)
	assert.NotEqual(t, pinNoWait, a.pin, "the pin outlived the load it was set for")
	assert.Less(t, len(writes), 2*len(fresh))
}

// One request in flight (a loop that sends its next request once the last
// is answered, as a client that waits for each answer does), on a
// link without a cap: a wait can never gather a message, since the only
// one that could come is the one being written. Adaptive's probes and
// throughput trials still wait, and each such wait delays the one round
// trip there is by the whole window. A trial that raised the window ends
// after adaptiveEmptyWaits waits in a row that gathered nothing, where it
// once ran out its 64 writes (about 16 ms of waiting a trial), and so does
// a probe: over the first 5000 round trips Adaptive waited 39 ms and made
// 0.84× Disabled's round trips; now it waits no more than 2% of the time
// and is within 3% of Disabled.
func TestAdaptiveOneInFlightStopsTrialsThatGatherNothing(t *testing.T) {
	l := closedLoopCases()["uncapped/1"]
	l.span = 250 * time.Millisecond // about 5000 round trips
	adaptive := simulateClosedLoop(NewAdaptive(AdaptiveConfig{}), l)
	disabled := simulateClosedLoop(NewDisabled(), l)
	s := adaptive.stats
	ratio := float64(s.Messages) / float64(disabled.stats.Messages)
	t.Logf("%d round trips (disabled %d, %.3f×); %d waits, %v waited in all", s.Messages, disabled.stats.Messages, ratio, s.Waited, s.ObservedWait)
	assert.LessOrEqual(t, s.ObservedWait, l.span/50)
	assert.GreaterOrEqual(t, ratio, 0.97)
}

// pinRecorder records every change of an Adaptive's pin.
type pinRecorder struct {
	*Adaptive
	pins []adaptivePin
}

func (r *pinRecorder) Flushed(now time.Time, messages, bytes int, requested, observed time.Duration) {
	before := r.pin
	r.Adaptive.Flushed(now, messages, bytes, requested, observed)
	if r.pin != before {
		r.pins = append(r.pins, r.pin)
	}
}

// Open-loop traffic writes as fast whatever the window, so no throughput
// trial may pin it. Here it comes in bursts, 5 µs apart for 5 ms, with a
// second of sparse traffic (10 ms apart) between them: a trial whose
// rates fell on either side of a lull credited the change of load to the
// window and pinned it, here at MaxWindow for good (dense waits always
// bring messages, so the pin was never released, and every batch was cut
// at a packet).
func TestAdaptiveTrialsIgnoreLulls(t *testing.T) {
	var arrivals []arrival
	at := t0
	for range 20 {
		for range 1000 {
			at = at.Add(us(5))
			arrivals = append(arrivals, arrival{at: at, size: 100})
		}
		for range 100 {
			at = at.Add(10 * time.Millisecond)
			arrivals = append(arrivals, arrival{at: at, size: 100})
		}
	}
	r := &pinRecorder{Adaptive: NewAdaptive(AdaptiveConfig{})}
	simulateWriter(r, arrivals, us(10))
	assert.Empty(t, r.pins, "pins set")
	assert.Equal(t, pinNone, r.pin)
}

// After the clock is set back (times without Go's monotonic reading), the
// idle bound ends waits as before. The last arrival stayed at its time
// before the step, an hour ahead of every message after it: none counted
// as an arrival, and every wait ran out the window for that hour, a
// closed loop's messages all come or not.
func TestAdaptiveIdleBoundAfterTheClockSteppedBack(t *testing.T) {
	a := NewAdaptive(AdaptiveConfig{})
	a.trialInterval = math.MaxInt
	burst := func(now time.Time) time.Time {
		require.Positive(t, a.Wait(now, 1, 100))
		for range 10 {
			now = now.Add(us(1))
			a.Observe(now, 100)
			a.Wait(now, 2, 200)
		}
		return now
	}
	now := burst(observeGaps(a, repeat(16, us(1)), 100))
	a.Flushed(now, 11, 1100, us(50), us(10))

	now = now.Add(-time.Hour) // the clock is set back
	for range 16 {
		now = now.Add(us(1))
		a.Observe(now, 100)
	}
	now = burst(now)
	assert.Zero(t, a.Wait(now.Add(us(8)), 12, 1200), "silence: write now")
}
