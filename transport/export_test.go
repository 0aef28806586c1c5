package transport

import "time"

// SetClockSkew makes t tell its peers a wall time off by d, as a node
// whose clock is wrong would (for tests in package transport_test).
func SetClockSkew(t *Transport, d time.Duration) { t.clock.skew = d }
