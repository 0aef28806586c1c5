package transport

import (
	"runtime"
	"time"

	"github.com/internode/internode/coalescing"
)

// askWait shows the strategy the messages queued since it last looked,
// then asks it how long to wait given what is pending now.
func (c *outConn) askWait() time.Duration {
	c.strategyMu.Lock()
	defer c.strategyMu.Unlock()
	messages, bytes := c.queue.observeNew(func(it *outItem) { c.strategy.Observe(it.enqueued(), it.size()) })
	wait := c.strategy.Wait(time.Now(), messages, bytes)
	if c.t.closing.Load() {
		return 0 // draining for Shutdown: no more waiting to coalesce
	}
	return wait
}

// setStrategy replaces the lane's coalescing strategy.
func (c *outConn) setStrategy(s coalescing.Strategy) {
	c.strategyMu.Lock()
	c.strategy = s
	c.strategyMu.Unlock()
}

// coalesceWait waits up to d for more messages, returning early when the
// strategy says the batch is worth sending, and reports how long it waited.
//
// The runtime's timers cannot always serve sub-millisecond waits: when the
// process is otherwise idle its poller sleeps in whole milliseconds, so a
// 200 µs timer fires after about 1.1 ms (measured on Linux, Go 1.26); when
// the process is busy they fire within microseconds. So the writer keeps
// timerLate, how late its timers have been firing. While they are on time
// a wait is one timer, woken by arrivals. While they are late (above
// timerLateLimit) a wait is made of two parts: while more than timerSlop is
// left, the writer sleeps on a timer set timerSlop short of the deadline;
// the last stretch is slept in slices of at most sliceSleep with a plain
// thread sleep (nanosleep(2) on Linux, which the kernel ends within its
// timer slack, 50 µs by default), checking for arrivals between slices,
// yielding the processor for the final few microseconds. A requested
// 200 µs wait is then observed at 200–300 µs instead of 1.1 ms (see
// BenchmarkCoalesceWaitAccuracy). One wait in timerProbeEvery uses a timer
// alone again, to learn whether timers are still late: the thread sleeps
// and the yielding cost processor time that a busy process, whose timers
// are on time, should not pay.
func (c *outConn) coalesceWait(d time.Duration) time.Duration {
	start := time.Now()
	deadline := start.Add(d)
	const (
		timerLateLimit  = 100 * time.Microsecond
		timerProbeEvery = 64
		timerSlop       = 1500 * time.Microsecond
		sliceSleep      = 40 * time.Microsecond
		// A thread sleep overshoots by the kernel's timer slack; the last
		// yieldBelow is spent yielding instead.
		yieldBelow = 60 * time.Microsecond
	)
	precise := c.timerLate > timerLateLimit && c.timerProbe < timerProbeEvery
	if precise {
		c.timerProbe++
	} else {
		c.timerProbe = 0
	}
	var timer *time.Timer
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if !precise || left > timerSlop {
			if timer == nil {
				timer = c.waitTimer
				defer stopTimer(timer)
			}
			if precise {
				timer.Reset(left - timerSlop)
			} else {
				timer.Reset(left)
			}
			select {
			case <-c.stop:
				return time.Since(start)
			case <-c.t.draining:
				return time.Since(start) // Shutdown: flush at once
			case <-timer.C:
				if !precise {
					c.timerLate += (time.Since(deadline) - c.timerLate) / 4
					return time.Since(start)
				}
				continue
			case <-c.wake:
				timer.Stop()
				c.signaled.Store(false)
				if c.askWait() == 0 { // enough arrived to write now
					return time.Since(start)
				}
				continue
			}
		}
		select {
		case <-c.stop:
			return time.Since(start)
		case <-c.t.draining:
			return time.Since(start)
		case <-c.wake:
			c.signaled.Store(false)
			if c.askWait() == 0 {
				return time.Since(start)
			}
			continue
		default:
		}
		if left > yieldBelow {
			threadSleep(min(sliceSleep, left-yieldBelow))
		} else {
			runtime.Gosched()
		}
	}
	return time.Since(start)
}

func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// stopTimer stops t so it can be Reset again (Go 1.23 timers need no
// draining).
func stopTimer(t *time.Timer) { t.Stop() }
