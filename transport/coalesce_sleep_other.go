//go:build !linux

package transport

import "time"

// threadSleep sleeps for about d. Outside Linux it is time.Sleep, which may
// overshoot sub-millisecond waits.
func threadSleep(d time.Duration) { time.Sleep(d) }
