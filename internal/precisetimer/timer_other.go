//go:build !linux

package precisetimer

import "time"

// Timer is a one-shot timer. Each expiry sends one value on C, unless one
// is already waiting there; a value on C may be from an expiry before the
// last Reset, so the receiver checks the time. Its methods may be called
// from one goroutine at a time. Outside Linux it is a time.Timer.
type Timer struct {
	C <-chan struct{}
	t *time.Timer
}

// New returns a stopped Timer.
func New() (*Timer, error) {
	c := make(chan struct{}, 1)
	t := time.AfterFunc(time.Hour, func() {
		select {
		case c <- struct{}{}:
		default:
		}
	})
	t.Stop()
	return &Timer{C: c, t: t}, nil
}

// Reset arms the timer to fire once, d from now, replacing any earlier
// deadline.
func (t *Timer) Reset(d time.Duration) error {
	t.t.Reset(max(d, 1))
	return nil
}

// Stop disarms the timer. A value already on C stays there.
func (t *Timer) Stop() error {
	t.t.Stop()
	return nil
}

// Close stops the timer.
func (t *Timer) Close() error { return t.Stop() }
