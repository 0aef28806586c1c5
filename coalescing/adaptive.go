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
	// connection that is not sparse (average gap at most MaxWindow), doubling
	// the interval after each failed probe up to the maximum.
	adaptiveMinProbeInterval = 64
	adaptiveMaxProbeInterval = 4096
	// A wait ends once no message has arrived for adaptiveIdleGaps times the
	// average gap between the messages that arrived during waits: waiting
	// has stopped bringing messages (a closed loop whose messages in flight
	// have all arrived).
	adaptiveIdleGaps = 8

	// Throughput trials. Every adaptiveMinTrialInterval writes (doubling,
	// up to the maximum, each time a trial confirms the current state),
	// Adaptive measures the messages it writes per second over
	// adaptiveRateWrites writes, switches to the opposite window (zero or
	// MaxWindow), lets adaptiveRateWrites writes pass for the traffic to
	// settle, and measures again. A rate adaptiveTrialMargin higher or
	// lower decides.
	adaptiveRateWrites       = 32
	adaptiveMinTrialInterval = 256
	adaptiveMaxTrialInterval = 16384
	adaptiveTrialMargin      = 1.15
	// Once pinned at MaxWindow, a second trial measures the rate with the
	// early exits (a full packet, the idle bound) and without them, in
	// turn, over adaptiveExitPhases periods (alternating, so that traffic
	// that drifts during the trial weighs on both sides alike); the exits
	// stay unless the rate without them is more than adaptiveExitMargin
	// higher. Ties keep them: they spend less latency.
	adaptiveExitPhases = 4
	// A phase's rate period (and its settling period) also lasts at least
	// adaptiveExitSpan: a closed loop that writes often would otherwise
	// be judged on a millisecond or two, shorter than its own swings.
	// Both sides of this trial wait, so a long one costs little.
	adaptiveExitSpan   = 10 * time.Millisecond
	adaptiveExitMargin = 1.05
	// Pinned, the early-exit trial runs again adaptiveMinRecheck after it
	// decided (doubling, up to adaptiveMaxRecheck, each time it decides
	// the same): one trial's rates, over a few tens of milliseconds, may
	// mislead, and a wrong "without" would otherwise have every wait run
	// out the window for the connection's life. A trial lasts about 80 ms
	// of a closed loop; after a second, one in thirteen of the time at
	// most is spent on trials, half of it in the setting not chosen.
	adaptiveMinRecheck = time.Second
	adaptiveMaxRecheck = 16 * time.Second
	// A rise of the window from zero (a probe, or a throughput trial that
	// raised it from zero to MaxWindow) ends as soon as its first
	// adaptiveEmptyWaits waits have all gathered nothing: a wait that
	// gathers no message writes the same batch later, on any link, so a
	// loop with nothing left to send until it is answered (one request in
	// flight) only pays for it. Open-loop traffic dense enough to be tried (average gap at most
	// MaxWindow) brings nothing in a MaxWindow wait at most one time in e
	// (Poisson arrivals at that boundary), so four such waits in a row end
	// a trial once in some 55 at most. There a probe's MaxWindow/4 waits
	// end it early about one time in e, but such a probe gathers at most
	// half a message a wait and fails the gains rule anyway.
	adaptiveEmptyWaits = 4
)

// adaptivePin says whether a throughput trial has fixed the window.
type adaptivePin uint8

const (
	pinNone   adaptivePin = iota // the gains rule tunes the window
	pinWait                      // waiting raised throughput: window held at MaxWindow (see earlyExits)
	pinNoWait                    // waiting lowered throughput: window held at zero
)

// Adaptive is the project's default strategy. It goes beyond the article in
// four ways:
//
//  1. It writes at once when FlushBytes or FlushMessages are pending: a full
//     frame gains nothing from waiting. (The article: "coalescing strategies
//     don't track how many messages or message bytes have arrived".)
//  2. It tunes its own window within [0, MaxWindow] from what waiting
//     actually gained, which the article cites as CASSANDRA-9030, never done.
//     A window that fell to zero is probed again on any connection that is
//     not sparse, so no state is final.
//  3. A wait ends as soon as waiting stops bringing messages: once no
//     message arrived for eight times the usual gap between messages that
//     arrive during waits. A closed-loop sender (a fixed number of requests
//     in flight) thus writes once its messages have all come, without a
//     message count it can never reach; an open-loop one waits the window.
//  4. It never waits when traffic is sparse, so at low load it is Disabled.
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
	waiting   bool
	waitBase  int           // messages pending when it began: the write it would have been
	waitStart time.Time     // when it began
	waitCame  int           // messages that arrived during it
	waitGap   time.Duration // average gap when it began

	// Arrivals during waits: the newest enqueue time seen, and an
	// exponential moving average of the gaps between messages that arrived
	// while a wait was in progress (zero until one is seen).
	lastArrival time.Time
	waitGapAvg  time.Duration

	period        adaptivePeriod
	pin           adaptivePin
	earlyExits    bool // pinned at MaxWindow, waits still end at a full packet and at the idle bound
	rate          rateMeter
	baseRate      float64 // messages/s in the last period before a trial
	trial         adaptiveTrial
	trialInterval int // writes between trials
	sinceTrial    int // writes since the last trial
	// Pinned at MaxWindow: when the early-exit trial last decided, and
	// how long after that it runs again.
	exitsDecided  time.Time
	exitsRecheck  time.Duration
	probing       bool // the window is on trial after being zero
	probeInterval int  // writes at window zero before the next probe
	writesAtZero  int  // busy writes at window zero since the last probe
	// Waits since the window last rose from zero (a probe, or a trial
	// that raised it to MaxWindow) that all gathered nothing; -1 once one
	// gathered a message (see endEmptyRise).
	emptyWaits int

	stats Stats
}

// adaptivePeriod sums what the waits of one evaluation period gained.
type adaptivePeriod struct {
	writes   int
	base     int     // messages pending when the waits began
	gained   int     // messages that arrived during the waits
	promised float64 // messages the average gap predicted for the observed waits
}

// adaptiveTrial is a throughput trial in progress.
type adaptiveTrial struct {
	active  bool
	settled bool          // the settling period is over; the rate now counts
	saved   time.Duration // the window before the trial

	// An early-exit trial (pinned at MaxWindow): the rate is measured
	// with the exit and without it, in turn, adaptiveExitPhases times.
	exit      bool
	exitPhase int        // phases measured so far; even phases have the exit
	exitRates [2]float64 // summed messages/s with the exit [0] and without [1]
	// recheck: an exit trial run again while pinned, whose last decision
	// was exitsBefore.
	recheck     bool
	exitsBefore bool
}

// rateMeter measures messages written per second over adaptiveRateWrites
// writes, or over a given span if that ends later: the messages of the
// writes after the first, over the time since the first.
type rateMeter struct {
	writes   int
	messages int
	first    time.Time
	// sparse: the connection was sparse at one of the period's writes,
	// so the period holds a lull, or the burst after one, and its rate
	// follows the traffic, not the window.
	sparse bool
}

// add records one write and, once the period is complete, returns its rate
// and starts a new one.
func (m *rateMeter) add(now time.Time, messages int, minSpan time.Duration) (float64, bool) {
	if m.writes == 0 {
		m.first = now
	} else {
		m.messages += messages
	}
	m.writes++
	elapsed := now.Sub(m.first)
	if m.writes < adaptiveRateWrites || elapsed < minSpan {
		return 0, false
	}
	rate := float64(m.messages) / max(elapsed.Seconds(), 1e-9)
	*m = rateMeter{}
	return rate, true
}

var _ Strategy = (*Adaptive)(nil)

// NewAdaptive returns an Adaptive strategy. Zero fields of cfg take their
// defaults; NewAdaptive does not fail, so fields out of range are clamped
// (call cfg.Validate first to reject them). The window starts at the probe
// window, MaxWindow/4, on trial.
func NewAdaptive(cfg AdaptiveConfig) *Adaptive {
	cfg = cfg.withDefaults()
	a := &Adaptive{cfg: cfg, probeInterval: adaptiveMinProbeInterval, trialInterval: adaptiveMinTrialInterval}
	a.startProbe()
	return a
}

// startProbe tries the probe window after window zero.
func (a *Adaptive) startProbe() {
	a.window, a.probing, a.emptyWaits = a.probeWindow(), true, 0
}

// Config returns the configuration in use, defaults filled in.
func (a *Adaptive) Config() AdaptiveConfig { return a.cfg }

func (a *Adaptive) probeWindow() time.Duration { return a.cfg.MaxWindow / adaptiveProbeDivisor }

// Observe implements Strategy.
func (a *Adaptive) Observe(enqueuedAt time.Time, size int) {
	a.gaps.observe(enqueuedAt)
	if a.lastArrival.Sub(enqueuedAt) > maxTrackedGap {
		// A clock set back (see gapAverage.observe): left ahead, the last
		// arrival would have no message count as one, nor the idle bound
		// end a wait, until the clock caught up.
		a.lastArrival = enqueuedAt
	}
	if a.waiting && enqueuedAt.After(a.lastArrival) {
		// Gaps that straddle the start of the wait count from its start.
		a.observeWaitGap(enqueuedAt.Sub(later(a.lastArrival, a.waitStart)))
		a.waitCame++
	}
	if enqueuedAt.After(a.lastArrival) {
		a.lastArrival = enqueuedAt
	}
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
// the batch is full (FlushBytes or FlushMessages), when the window is zero,
// or when traffic is sparse (the average gap exceeds MaxWindow: not one more
// message expected even in the longest wait). Otherwise it returns the
// current window, or less if the batch should be full sooner (see
// timeToFill) or if waiting has stopped bringing messages (see idleBound).
// Calls before the next Flushed share the first positive answer's
// deadline.
func (a *Adaptive) Wait(now time.Time, pendingMessages, pendingBytes int) time.Duration {
	if pendingMessages <= 0 {
		return 0
	}
	if pendingBytes >= a.cfg.FlushBytes || pendingMessages >= a.cfg.FlushMessages {
		a.stats.EarlyFlushes++
		return 0
	}
	if a.pin == pinWait && a.earlyExits && pendingBytes+a.averageSize > a.cfg.PacketBytes {
		// The packet rate binds and the next message would not fit in
		// this packet: a full packet goes now.
		a.stats.EarlyFlushes++
		return 0
	}
	gap := a.gaps.average()
	if a.window == 0 || gap > a.cfg.MaxWindow {
		return 0
	}
	if !a.waiting {
		a.waitStart = now
	}
	// The round's deadline is set by the window; the idle bound only cuts
	// this answer short, so that each arrival can extend the wait again.
	wait := a.round.bound(now, min(a.window, a.timeToFill(pendingMessages, pendingBytes, gap)))
	if wait <= 0 {
		return 0
	}
	if !a.waiting {
		a.waiting, a.waitBase, a.waitGap, a.waitCame = true, pendingMessages, gap, 0
	}
	if a.pin == pinWait && !a.earlyExits {
		return wait // pinned without early exits: the window, or a full frame
	}
	return max(min(wait, a.idleBound(now)), 0) // zero: waiting stopped bringing messages
}

// observeWaitGap adds a gap seen during a wait to its exponential moving
// average, over about 16 gaps.
func (a *Adaptive) observeWaitGap(gap time.Duration) {
	switch {
	case gap <= 0:
	case a.waitGapAvg == 0:
		a.waitGapAvg = gap
	default:
		a.waitGapAvg += (gap - a.waitGapAvg) / gapSamples
	}
}

// idleBound is how long the wait may go on: until adaptiveIdleGaps times
// the usual gap between arrivals during waits has passed since the last
// arrival or since the wait began, whichever is later. Before any such gap
// is known it does not bound the wait.
func (a *Adaptive) idleBound(now time.Time) time.Duration {
	if a.waitGapAvg == 0 {
		return a.window
	}
	gap := a.waitGapAvg
	if a.pin == pinWait && a.earlyExits && a.waitCame >= 2 {
		// Where packets bind, the answers to a closed loop's messages
		// come a packet at a time: a burst, then a pause of a packet's
		// time. The usual gap holds those pauses too, so the bound would
		// wait out the next packet's time for messages the loop holds
		// back until its answers come. This wait's own pace (its
		// arrivals over its time) ends it once its burst has come.
		gap = min(gap, a.lastArrival.Sub(a.waitStart)/time.Duration(a.waitCame))
	}
	idle := max(adaptiveIdleGaps*gap, a.cfg.MaxWindow/adaptiveFloorDivisor)
	return later(a.lastArrival, a.waitStart).Add(idle).Sub(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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

// Flushed implements Strategy. Every write counts towards the throughput
// measurement and the next trial (see trialStep). Unless a trial runs or
// has pinned the window, a write that followed a wait is added to the
// evaluation period of the gains rule, and every adaptivePeriodWrites such
// writes the window moves; a write at window zero on a connection that is
// not sparse counts towards the next probe.
func (a *Adaptive) Flushed(now time.Time, messages, bytes int, requested, observed time.Duration) {
	a.round.end()
	a.stats.record(messages, bytes, requested, observed)
	// A positive answer the writer did not wait (a queued message's
	// deadline came sooner, or it was draining) is reported as requested
	// 0: no wait gathered nothing, and none is judged.
	waited := a.waiting && requested > 0
	a.waiting = false
	if waited {
		// The silence that ended the wait is a gap too, one at least this
		// long. Without it the average would only ever see gaps shorter
		// than the bound it sets, and could never grow: a loop that slowed
		// down (each message a packet of its own) would stay cut short.
		a.observeWaitGap(now.Sub(later(a.lastArrival, a.waitStart)))
	}
	ended := waited && a.endEmptyRise(messages)
	if a.trialStep(now, messages) || a.pin == pinNoWait || ended {
		return
	}
	if waited {
		a.learn(messages, observed)
		return
	}
	if a.window == 0 && a.gaps.average() <= a.cfg.MaxWindow {
		a.writesAtZero++
		if a.writesAtZero >= a.probeInterval {
			a.writesAtZero = 0
			a.startProbe()
		}
	}
}

// trialStep measures throughput and runs trials. It reports whether a
// trial is in progress, during which the gains rule is suspended.
//
// Whether waiting pays in throughput cannot be told from the batches alone.
// A closed-loop sender gathers more messages the longer it waits whatever
// the network, but only where the packet rate binds does a fuller packet
// make the round trip, and so the sender, faster; elsewhere the wait is
// pure delay. And the gain can only show after a long wait: at window zero
// every message takes a packet of its own, the loop runs at the packet
// rate, and a short wait gathers next to nothing. So a trial compares the
// rate at the current window with the rate at the opposite extreme.
func (a *Adaptive) trialStep(now time.Time, messages int) bool {
	var span time.Duration
	if a.trial.exit {
		span = adaptiveExitSpan
	}
	sparse := a.rate.sparse || a.gaps.average() > a.cfg.MaxWindow
	rate, complete := a.rate.add(now, messages, span)
	if !complete {
		a.rate.sparse = sparse
	}
	if !a.trial.active {
		if !complete {
			return false
		}
		a.baseRate = rate
		a.sinceTrial += adaptiveRateWrites
		if a.pin == pinWait {
			if now.Sub(a.exitsDecided) < a.exitsRecheck || a.gaps.average() > a.cfg.MaxWindow {
				return false
			}
			a.trial = adaptiveTrial{active: true, exit: true, recheck: true, exitsBefore: a.earlyExits}
			a.earlyExits = true
			return true
		}
		if a.sinceTrial < a.trialInterval {
			return false
		}
		if sparse {
			if a.pin == pinNoWait {
				// Pinned at zero, only a trial could release the
				// window, and none starts on a lull: bursts a few
				// milliseconds apart put one in every period, and the
				// pin, set for the load before them, held for good.
				// The gains rule takes over; its probes count only
				// the writes that are not sparse.
				a.pin = pinNone
			}
			return false // the next period may compare the windows
		}
		a.sinceTrial = 0
		a.trial = adaptiveTrial{active: true, saved: a.window}
		a.window = a.cfg.MaxWindow
		if a.trial.saved > 0 {
			a.window = 0
		}
		a.emptyWaits = 0
		return true
	}
	if !complete {
		return true
	}
	if sparse && !a.trial.exit {
		// A lull in a window trial: its rates would credit the change
		// of load to the window, and pin it (at MaxWindow, for good on
		// dense open-loop traffic, whose waits always bring messages).
		// The trial is called off.
		a.window, a.trial = a.trial.saved, adaptiveTrial{}
		return false
	}
	if !a.trial.settled {
		a.trial.settled = true
		return true
	}
	if a.trial.exit {
		return a.exitTrialStep(now, rate)
	}
	longer := a.window > a.trial.saved
	better := rate > adaptiveTrialMargin*a.baseRate
	worse := rate*adaptiveTrialMargin < a.baseRate
	pin := pinNone
	switch {
	case longer && better, !longer && worse:
		pin = pinWait
	case longer && worse, !longer && better:
		pin = pinNoWait
	}
	return a.decideTrial(pin)
}

// decideTrial ends a window trial with its verdict: pin the window at
// MaxWindow (and start the early-exit trial), pin it at zero, or return
// it to where it was. It reports whether a trial is still in progress.
func (a *Adaptive) decideTrial(pin adaptivePin) bool {
	if pin == a.pin {
		a.trialInterval = min(2*a.trialInterval, adaptiveMaxTrialInterval)
	} else {
		a.trialInterval = adaptiveMinTrialInterval
	}
	a.pin = pin
	switch pin {
	case pinWait:
		a.setWindow(a.cfg.MaxWindow)
	case pinNoWait:
		a.setWindow(0)
	default:
		a.window = a.trial.saved
	}
	a.trial = adaptiveTrial{}
	a.period = adaptivePeriod{}
	a.probing = false
	if pin == pinWait {
		// Waiting pays; whether ending waits early (at a full packet,
		// or once arrivals stop) pays too is the next trial's question.
		a.trial = adaptiveTrial{active: true, exit: true}
		a.earlyExits = true
		return true
	}
	return false
}

// endEmptyRise takes a wait that just ended with a write of messages,
// and ends a rise of the window from zero whose waits have gathered
// nothing: a probe fails, and a throughput trial that raised the window
// from zero to MaxWindow finds that waiting lowered throughput, after
// adaptiveEmptyWaits such waits in a row from its start rather than a
// full trial. It reports whether it ended one.
//
// A wait that gathered no message wrote the batch it began with, only
// later. A closed loop with one request in flight can never gather one,
// and its probes otherwise waited out their window 8 times each and its
// trials up to 64; they cost such a loop a sixth of its rate over its
// first few thousand round trips. Any loop with a message to come fills
// the first waits, and the rise runs as before.
func (a *Adaptive) endEmptyRise(messages int) bool {
	rising := a.trial.active && !a.trial.exit && a.window > a.trial.saved ||
		!a.trial.active && a.probing
	if !rising || a.emptyWaits < 0 {
		return false
	}
	if messages > a.waitBase { // as learn counts a wait's gain
		a.emptyWaits = -1
		return false
	}
	a.emptyWaits++
	if a.emptyWaits < adaptiveEmptyWaits {
		return false
	}
	a.emptyWaits = -1
	a.period = adaptivePeriod{}
	if !a.trial.active {
		a.narrow() // a failed probe
		return true
	}
	a.rate = rateMeter{} // its writes waited
	a.decideTrial(pinNoWait)
	return true
}

// exitTrialStep takes one settled rate of an early-exit trial, switches
// the exits for the next phase, and after the last decides.
//
// Where packets bind, a packet written as soon as it is full leaves the
// link busy with full packets instead of idle during the wait for a
// batch that would take several, and a closed loop whose messages have
// all arrived has nothing to wait for. Where they do not (loopback:
// waiting pays in system calls and wake-ups, not packets), ending batches
// at a packet's worth of bytes or at a pause in arrivals only multiplies
// the writes, and the rate without the exits is the higher.
func (a *Adaptive) exitTrialStep(now time.Time, rate float64) bool {
	t := &a.trial
	t.exitRates[t.exitPhase%2] += rate
	t.exitPhase++
	if t.exitPhase < adaptiveExitPhases {
		t.settled = false
		a.earlyExits = t.exitPhase%2 == 0
		return true
	}
	a.earlyExits = t.exitRates[0]*adaptiveExitMargin >= t.exitRates[1]
	if t.recheck && a.earlyExits == t.exitsBefore {
		a.exitsRecheck = min(2*a.exitsRecheck, adaptiveMaxRecheck)
	} else {
		a.exitsRecheck = adaptiveMinRecheck
	}
	a.exitsDecided = now
	a.trial = adaptiveTrial{}
	return false
}

// setWindow sets the window after a trial, counting the move.
func (a *Adaptive) setWindow(w time.Duration) {
	switch {
	case w > a.trial.saved:
		a.stats.WindowGrowths++
	case w < a.trial.saved:
		a.stats.WindowShrinks++
	}
	a.window = w
}

// learn adds one waited write to the period and, when the period is
// complete, judges it. The waits paid if they brought at least MinGrowth
// messages each on average and at least half the messages the arrival rate
// promised for the time they took (the observed time: sleeps overshoot).
//
// The judgement counts messages gained per wait, not growth relative to
// the batch: a closed-loop sender (a fixed number of requests in flight)
// whose next messages wait for the answers to these cannot double a batch
// that already holds most of them, yet when the packet rate binds each
// message gathered saves a packet. One whose messages are all in the queue
// gains nothing, its waits end at the idle bound, and the window falls.
func (a *Adaptive) learn(messages int, observed time.Duration) {
	p := &a.period
	p.writes++
	p.base += a.waitBase
	p.gained += max(messages-a.waitBase, 0)
	p.promised += float64(observed) / float64(a.waitGap)
	if p.writes < adaptivePeriodWrites {
		return
	}
	grew := float64(p.gained) >= a.cfg.MinGrowth*float64(p.writes)
	busy := 2*float64(p.gained) >= p.promised
	a.period = adaptivePeriod{}
	// Pinned by a trial, the window is released only when waits stop
	// bringing messages at all: when packets bind, a wait that ends at a
	// full packet gathers less than the arrival rate promises, by design.
	if grew && (busy || a.pin == pinWait) {
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
// drops straight to zero and waits twice as long before the next. A window
// a trial pinned at MaxWindow is released to the gains rule: the load
// changed, and waiting stopped bringing messages.
func (a *Adaptive) narrow() {
	a.stats.WindowShrinks++
	a.pin = pinNone
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
