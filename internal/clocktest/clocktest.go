// Package clocktest makes time readings that a step of the system clock
// would have made, for tests of code that must not be moved by one.
package clocktest

import (
	"time"
	"unsafe"
)

// WallStepped is t as a time.Now reading would have been had the system
// clock been stepped by d (whole seconds) since: its wall reading moved,
// its monotonic reading not, which is what an NTP or chrony step, a VM
// resumed or an operator's date -s do to the two clocks, and so to a
// deadline made before the step (context.WithTimeout keeps both). A t
// without a monotonic reading is returned as it is. Go has no API for
// such a reading, so this edits the seconds in time.Time's first word
// (hasMonotonic in bit 63, seconds since 1885 from bit 30); the package's
// test checks that the result is what it should be.
func WallStepped(t time.Time, d time.Duration) time.Time {
	const hasMonotonic, secShift = 1 << 63, 30
	wall := (*uint64)(unsafe.Pointer(&t))
	if *wall&hasMonotonic != 0 {
		*wall += uint64(int64(d/time.Second)) << secShift
	}
	return t
}
