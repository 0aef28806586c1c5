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
// Short waits spin (yielding the processor) because timers overshoot them.
func (c *outConn) coalesceWait(d time.Duration) time.Duration {
	start := time.Now()
	deadline := start.Add(d)
	// Waits shorter than this yield the processor in a loop; longer ones
	// sleep on the timer and spin their last stretch. Timers on a quiet
	// process wake late (up to a millisecond), but spinning longer costs
	// the producers their processor: on two cores, yielding through
	// 250 us made the coalesce bench's p99 3.5 ms worse than Disabled.
	const spinBelow = 20 * time.Microsecond
	var timer *time.Timer
	for {
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			break
		}
		if left < spinBelow {
		spin:
			for time.Now().Before(deadline) {
				runtime.Gosched()
				select {
				case <-c.wake:
					c.signaled.Store(false)
					if c.askWait() == 0 { // enough arrived to write now
						break spin
					}
				default:
				}
			}
			break
		}
		if timer == nil {
			timer = c.waitTimer
			timer.Reset(left - spinBelow/2)
			defer stopTimer(timer)
		}
		select {
		case <-c.stop:
			return time.Since(start)
		case <-c.t.draining:
			return time.Since(start) // Shutdown: flush at once
		case <-timer.C:
			timer.Reset(time.Hour)
			continue
		case <-c.wake:
			c.signaled.Store(false)
			if c.askWait() == 0 {
				return time.Since(start)
			}
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
