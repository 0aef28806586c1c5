// Package bufpool recycles large byte slices by power-of-two size class,
// so that receiving many large messages neither zeroes nor collects a
// fresh buffer for each.
//
// Buffer ownership is explicit: Get hands a buffer to the caller, which
// either gives it back with Put once nothing refers to it any more, or
// keeps it for good (the garbage collector then takes it as usual). A
// buffer must not be Put twice; Put panics on slices this package cannot
// have made, which catches most misuse.
package bufpool

import (
	"math/bits"
	"sync"
)

// Size classes: 64 KiB to 1 GiB.
const (
	minShift = 16
	maxShift = 30
)

var pools [maxShift - minShift + 1]sync.Pool

// class returns the pool index for a buffer of n bytes, or -1.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// Get returns a slice of length n whose contents are arbitrary: the
// caller must overwrite every byte it reads. Sizes above 1 GiB are
// allocated directly.
func Get(n int) []byte {
	c := class(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := pools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minShift))
}

// Put gives b back for reuse. b must have come from Get and must not be
// used afterwards.
func Put(b []byte) {
	c := class(cap(b))
	if c < 0 {
		return
	}
	if cap(b) != 1<<(c+minShift) {
		panic("bufpool: Put of a slice Get did not make")
	}
	b = b[:cap(b)]
	pools[c].Put(&b)
}
