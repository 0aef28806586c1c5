package transport

import (
	"runtime"
	"time"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/precisetimer"
	"github.com/internode/internode/routing"
)

// askWait shows the strategy the messages queued since it last looked,
// then asks it how long to wait given what is pending now.
//
// A wait that would outlast a queued message's deadline is not waited:
// the message would expire in the queue, when written now it may still
// be delivered in time.
func (c *outConn) askWait() time.Duration {
	c.strategyMu.Lock()
	defer c.strategyMu.Unlock()
	messages, bytes, soonest := c.queue.observeNew(func(it *outItem) { c.strategy.Observe(it.enqueued(), it.size()) })
	wait := c.strategy.Wait(time.Now(), messages, bytes)
	if c.t.closing.Load() {
		return 0 // draining for Shutdown: no more waiting to coalesce
	}
	if wait > 0 && soonest != 0 && soonest-monoNanos() <= int64(wait) {
		return 0
	}
	return wait
}

// newStrategy makes one connection's strategy for lane with factory, or
// the lane's default (DefaultCoalescing) when the factory returns nil
// for it: the writer calls its strategy at every write, and a nil one
// crashed the process at the lane's first message.
func newStrategy(factory func(routing.Lane) coalescing.Strategy, lane routing.Lane) coalescing.Strategy {
	if s := factory(lane); s != nil {
		return s
	}
	return DefaultCoalescing(lane)
}

// setStrategy replaces the lane's coalescing strategy, and wakes the
// writer: a wait in progress was the old strategy's answer, and is asked
// again of the new one (waitMore), which may write at once. Left alone,
// it ran out the old window, up to WindowLimit, or waited for the next
// message. A writer that was not waiting only looks at its queue again.
func (c *outConn) setStrategy(s coalescing.Strategy) {
	c.strategyMu.Lock()
	c.strategy = s
	c.strategyMu.Unlock()
	c.signal()
}

// coalesceWait waits up to d for more messages, and reports how long it
// waited. Each arrival asks the strategy again: its answer replaces what
// is left of the wait, and zero (the batch is worth sending) ends it.
//
// The runtime's timers cannot always serve sub-millisecond waits: when the
// process is otherwise idle its poller sleeps in whole milliseconds, so a
// 200 µs timer fires after about 1.1 ms (measured on Linux, Go 1.26); when
// the process is busy most fire within microseconds. So the writer counts
// how many of its runtime timers in a row fired more than timerLateLimit
// late. After timerLateRuns of them a wait is a precisetimer (a timerfd
// the poller watches, which ends the poller's sleep at the deadline): a
// requested 200 µs wait is then observed at about 240 µs instead of
// 1.1 ms (see BenchmarkCoalesceWaitAccuracy). One wait in timerProbeEvery
// uses the runtime timer again, to learn whether it is still late. A
// busy process, whose timers are late only now and then, keeps the
// runtime timer: the precise one costs system calls and a goroutine's
// wake-up, and on a loopback connection whose closed loop is bound by
// processor time, its shorter waits (smaller batches) cost more than the
// timer's lateness (0.78–0.87× the requests a second, see docs/performance.md).
//
// Neither timer holds a processor while it waits, so the producers the
// wait is for can run; only its last spinBelow is spent yielding in a loop.
func (c *outConn) coalesceWait(d time.Duration) time.Duration {
	start := time.Now()
	// However the strategy answers, one write waits at most WindowLimit:
	// a strategy that asks for its window at every arrival, without
	// capping its answers by its first one's deadline as this package's
	// do, would otherwise extend the wait at each message for as long as
	// they came more often than that, and write none of them.
	limit := start.Add(coalescing.WindowLimit)
	deadline := start.Add(min(d, coalescing.WindowLimit))
	const (
		timerLateLimit  = 400 * time.Microsecond
		timerLateRuns   = 8
		timerProbeEvery = 256
		// The last spinBelow of a wait is spent yielding the processor in
		// a loop that watches for arrivals, rather than parked: waking a
		// parked goroutine, and the idle processor it would run on, takes
		// longer than that.
		spinBelow = 20 * time.Microsecond
		// A precise timer's expiry reaches the writer about 80 µs after
		// its deadline (the poller's wake-up and one goroutine's hand-off
		// to another), so it is set up to preciseLead early (half a short
		// wait at most), and a precise wait with no more than that left
		// ends.
		preciseLead = 50 * time.Microsecond
		// A clock that reads the same across stillSpins yields in a row
		// is not moving: a testing/synctest bubble's, which moves only
		// once every goroutine in it blocks, so a loop that waits for it
		// would wait for ever. The wait then parks for what is left.
		stillSpins = 64
	)
	precise := c.timersLate >= timerLateRuns && c.timerProbe < timerProbeEvery && c.preciseTimer() != nil
	if precise {
		c.timerProbe++
	} else {
		c.timerProbe = 0
	}
	var runtimeC <-chan time.Time
	var preciseC <-chan struct{}
	early := spinBelow / 2
	if precise {
		preciseC = c.precise.C
		early = max(early, min(preciseLead, d/2))
		// Not stopped after the wait: an expiry left on C only makes
		// the next wait check the clock once more.
	} else {
		runtimeC = c.waitTimer.C
		defer stopTimer(c.waitTimer)
	}
	// When the armed timer is due (zero: not armed). An arrival that
	// moves the deadline later leaves the timer be: it fires, and the
	// loop arms it again for the rest, so most arrivals cost no Reset.
	var armed time.Time
	var lastLeft time.Duration
	still := 0 // spins in a row that saw the clock stand still
	for {
		left := time.Until(deadline)
		if left <= 0 || precise && left <= early {
			break // a precise timer set now would fire past the deadline
		}
		if left == lastLeft {
			still++
		} else {
			lastLeft, still = left, 0
		}
		lead := early
		if left < spinBelow && still >= stillSpins {
			lead = 0 // the clock is a fake one: park until the deadline itself
		} else if left < spinBelow {
			runtime.Gosched()
			select {
			case <-c.wake:
				c.signaled.Store(false)
				if c.conn.dead.Load() || !c.waitMore(&deadline, limit) {
					return time.Since(start)
				}
			default:
			}
			continue
		}
		if due := time.Now().Add(left - lead); armed.IsZero() || due.Before(armed) {
			armed = due
			if precise {
				_ = c.precise.Reset(left - lead) // cannot fail on a descriptor it owns
			} else {
				c.waitTimer.Reset(left - lead)
			}
		}
		select {
		case <-c.stop:
			return time.Since(start)
		case <-c.t.draining:
			return time.Since(start) // Shutdown: flush at once
		case <-runtimeC:
			if time.Since(armed) > timerLateLimit {
				c.timersLate++
			} else {
				c.timersLate = 0
			}
			armed = time.Time{}
		case <-preciseC:
			// A precise timer's expiry may be one from before the last
			// Reset: the loop checks the clock.
			if !time.Now().Before(armed) {
				armed = time.Time{}
			}
		case <-c.wake:
			c.signaled.Store(false)
			if c.conn.dead.Load() || !c.waitMore(&deadline, limit) { // lost, or enough arrived to write now
				return time.Since(start)
			}
		}
	}
	return time.Since(start)
}

// waitMore asks the strategy again after an arrival and moves the wait's
// deadline to its new answer, which may be later (an arrival can extend a
// wait, up to the strategy's own bound, and never past limit) or sooner
// than the last. It reports false when the answer is to write now.
func (c *outConn) waitMore(deadline *time.Time, limit time.Time) bool {
	wait := c.askWait()
	if wait <= 0 {
		return false
	}
	*deadline = time.Now().Add(wait)
	if deadline.After(limit) {
		*deadline = limit
	}
	return true
}

// preciseTimer returns the writer's precise timer, made on first use, or
// nil if it cannot be made (no timerfd: the runtime timer serves alone).
// The writer closes it before it may exit: the next writer of the lane
// owns the field once the peer has recorded the exit.
func (c *outConn) preciseTimer() *precisetimer.Timer {
	if c.precise == nil && !c.preciseFailed {
		pt, err := precisetimer.New()
		if err != nil {
			c.preciseFailed = true
			c.t.log.Debug("internode: no precise timer for coalescing waits", "err", err)
			return nil
		}
		c.precise = pt
	}
	return c.precise
}

// closePreciseTimer releases the precise timer, if any.
func (c *outConn) closePreciseTimer() {
	if c.precise != nil {
		_ = c.precise.Close()
		c.precise = nil
	}
}

func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// stopTimer stops t so it can be Reset again (Go 1.23 timers need no
// draining).
func stopTimer(t *time.Timer) { t.Stop() }
