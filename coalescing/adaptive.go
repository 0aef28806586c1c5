package coalescing

import "time"

// Tuning constants of Adaptive. They are not configuration: they shape how
// fast the window moves, not where it goes.
const (
	// adaptivePeriodWrites is how many waited writes make one evaluation
	// period; judging several writes at once keeps one unlucky wait from
	// moving the window.
	adaptivePeriodWrites = 8
	// The probe window is MaxWindow/adaptiveProbeDivisor: where the window
	// starts, and where it restarts after it has fallen to zero.
	adaptiveProbeDivisor = 4
	// A window below MaxWindow/adaptiveFloorDivisor falls to zero: waits of
	// a few microseconds cost a timer and gather next to nothing.
	adaptiveFloorDivisor = 32
	// While the window is zero, Adaptive probes after this many writes on a
	// connection busy enough to gain from the probe window, doubling the
	// interval after each failed probe up to the maximum.
	adaptiveMinProbeInterval = 64
	adaptiveMaxProbeInterval = 4096
)

// Adaptive is the project's default strategy. It goes beyond the seed in
// three ways:
//
//  1. It writes at once when FlushBytes or FlushMessages are pending: a full
//     frame gains nothing from waiting. (The seed: "coalescing strategies
//     don't track how many messages or message bytes have arrived".)
//  2. It tunes its own window within [0, MaxWindow] from what waiting
//     actually gained, which the seed cites as CASSANDRA-9030, never done.
//  3. It never waits when traffic is sparse, so at low load it is Disabled.
//
// See the package documentation for the algorithm step by step.
//
// An Adaptive is not safe for concurrent use; use one per connection.
type Adaptive struct {
	cfg         AdaptiveConfig
	window      time.Duration
	gaps        gapAverage
	averageSize int // moving average of message sizes, in bytes
	round       waitRound

	// The wait for the write in progress.
	waiting  bool
	waitBase int           // messages pending when it began: the write it would have been
	waitGap  time.Duration // average gap when it began

	period        adaptivePeriod
	probing       bool // the window is on trial after being zero
	probeInterval int  // writes at window zero before the next probe
	writesAtZero  int  // busy writes at window zero since the last probe

	stats Stats
}

// adaptivePeriod sums what the waits of one evaluation period gained.
type adaptivePeriod struct {
	writes   int
	base     int     // messages pending when the waits began
	gained   int     // messages that arrived during the waits
	promised float64 // messages the average gap predicted for the observed waits
}

var _ Strategy = (*Adaptive)(nil)

// NewAdaptive returns an Adaptive strategy. Zero fields of cfg take their
// defaults; NewAdaptive does not fail, so fields out of range are clamped
// (call cfg.Validate first to reject them). The window starts at the probe
// window, MaxWindow/4, on trial.
func NewAdaptive(cfg AdaptiveConfig) *Adaptive {
	cfg = cfg.withDefaults()
	a := &Adaptive{cfg: cfg, probeInterval: adaptiveMinProbeInterval}
	a.window, a.probing = a.probeWindow(), true
	return a
}

// Config returns the configuration in use, defaults filled in.
func (a *Adaptive) Config() AdaptiveConfig { return a.cfg }

func (a *Adaptive) probeWindow() time.Duration { return a.cfg.MaxWindow / adaptiveProbeDivisor }

// Observe implements Strategy.
func (a *Adaptive) Observe(enqueuedAt time.Time, size int) {
	a.gaps.observe(enqueuedAt)
	size = max(size, 0)
	// An exponential moving average over about the last 16 messages, the
	// span the gaps are averaged over.
	if a.averageSize == 0 {
		a.averageSize = size
	} else {
		a.averageSize += (size - a.averageSize) / gapSamples
	}
}

// Wait implements Strategy. It returns zero when nothing is pending, when
// the batch is full (FlushBytes or FlushMessages), or when the average gap
// exceeds the current window (less than one more message expected while
// waiting). Otherwise it returns the current window, or less if the batch
// should be full sooner (see timeToFill). Calls before the next Flushed
// share the first positive answer's deadline.
func (a *Adaptive) Wait(now time.Time, pendingMessages, pendingBytes int) time.Duration {
	if pendingMessages <= 0 {
		return 0
	}
	if pendingBytes >= a.cfg.FlushBytes || pendingMessages >= a.cfg.FlushMessages {
		a.stats.EarlyFlushes++
		return 0
	}
	gap := a.gaps.average()
	if gap > a.window {
		return 0
	}
	wait := a.round.bound(now, min(a.window, a.timeToFill(pendingMessages, pendingBytes, gap)))
	if wait > 0 && !a.waiting {
		a.waiting, a.waitBase, a.waitGap = true, pendingMessages, gap
	}
	return wait
}

// timeToFill bounds the wait by when the batch should be full: twice the
// time, at one message per average gap, until FlushMessages or FlushBytes
// are pending. Twice, because arrivals are irregular and a writer that asks
// again as messages arrive stops at the threshold anyway; the bound only
// keeps a writer that does not from waiting long past a full frame. Both
// thresholds exceed what is pending here, so it is at least two gaps.
func (a *Adaptive) timeToFill(pendingMessages, pendingBytes int, gap time.Duration) time.Duration {
	missing := a.cfg.FlushMessages - pendingMessages
	if a.averageSize > 0 {
		missingBytes := a.cfg.FlushBytes - pendingBytes
		missing = min(missing, (missingBytes+a.averageSize-1)/a.averageSize)
	}
	return 2 * time.Duration(missing) * gap // ≤ 2^21 × 1 s: no overflow
}

// Flushed implements Strategy. A write that followed a wait is added to the
// evaluation period, and every adaptivePeriodWrites such writes the window
// moves. A write at window zero on a busy connection counts towards the
// next probe.
func (a *Adaptive) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	a.round.end()
	a.stats.record(messages, bytes, requested, observed)
	if a.waiting {
		a.waiting = false
		a.learn(messages, observed)
		return
	}
	if a.window == 0 && a.gaps.average() <= a.probeWindow() {
		a.writesAtZero++
		if a.writesAtZero >= a.probeInterval {
			a.writesAtZero = 0
			a.window, a.probing = a.probeWindow(), true
		}
	}
}

// learn adds one waited write to the period and, when the period is
// complete, judges it: the waits paid if they grew batches by MinGrowth and
// gathered at least half the messages the arrival rate promised for the time
// spent (using the observed wait, since sleeps overshoot).
func (a *Adaptive) learn(messages int, observed time.Duration) {
	p := &a.period
	p.writes++
	p.base += a.waitBase
	p.gained += max(messages-a.waitBase, 0)
	p.promised += float64(observed) / float64(a.waitGap)
	if p.writes < adaptivePeriodWrites {
		return
	}
	grew := float64(p.gained) >= a.cfg.MinGrowth*float64(p.base)
	busy := 2*float64(p.gained) >= p.promised
	a.period = adaptivePeriod{}
	if grew && busy {
		a.widen()
	} else {
		a.narrow()
	}
}

// widen grows the window by a quarter, up to MaxWindow, and ends any probe
// as a success.
func (a *Adaptive) widen() {
	a.probing = false
	a.probeInterval = adaptiveMinProbeInterval
	if a.window < a.cfg.MaxWindow {
		a.window = min(a.cfg.MaxWindow, a.window+max(a.window/4, time.Nanosecond))
		a.stats.WindowGrowths++
	}
}

// narrow halves the window, down to zero below the floor. A failed probe
// drops straight to zero and waits twice as long before the next.
func (a *Adaptive) narrow() {
	a.stats.WindowShrinks++
	if a.probing {
		a.probing = false
		a.window = 0
		a.probeInterval = min(2*a.probeInterval, adaptiveMaxProbeInterval)
		return
	}
	a.window /= 2
	if a.window < a.cfg.MaxWindow/adaptiveFloorDivisor {
		a.window = 0
	}
}

// Stats implements Strategy. Window is the current tuned window and
// AverageGap the mean of the last 16 gaps.
func (a *Adaptive) Stats() Stats {
	s := a.stats
	s.Strategy = NameAdaptive
	s.Window = a.window
	s.AverageGap = a.gaps.average()
	return s
}
