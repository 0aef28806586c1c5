// Package bufpool recycles byte slices by size class, so that receiving
// many frames and large messages neither zeroes nor collects a fresh
// buffer for each.
//
// Classes are powers of two from 1 KiB to 64 KiB, then four per power of
// two (1, 1.25, 1.5 and 1.75 times it) up to 1 GiB, so a buffer is at most
// twice its length up to 64 KiB and at most a quarter longer above. Cap
// tells the capacity Get will return for a length, so a caller that counts
// memory can count what it really holds.
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

const (
	minShift   = 10 // 1 KiB
	splitShift = 16 // 64 KiB: above it, four classes per power of two
	maxShift   = 30 // 1 GiB
	numClasses = splitShift - minShift + 1 + 4*(maxShift-splitShift)
)

var pools [numClasses]sync.Pool

// sizes[c] is the capacity of class c.
var sizes = func() (s [numClasses]int) {
	c := 0
	for shift := minShift; shift <= splitShift; shift++ {
		s[c] = 1 << shift
		c++
	}
	for shift := splitShift; shift < maxShift; shift++ {
		for q := 5; q <= 8; q++ {
			s[c] = q << (shift - 2)
			c++
		}
	}
	return s
}()

// class returns the smallest class holding n bytes, or -1 when n is above
// 1 GiB.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	if n > 1<<maxShift {
		return -1
	}
	shift := bits.Len(uint(n - 1)) // 2^(shift-1) < n <= 2^shift
	if shift <= splitShift {
		return shift - minShift
	}
	// n is in (2^(shift-1), 2^shift]: quarters of 2^(shift-1).
	base := splitShift - minShift + 1 + 4*(shift-1-splitShift)
	quarter := 1 << (shift - 3)
	q := (n - 1 - 1<<(shift-1)) / quarter // 0..3
	return base + q
}

// Cap returns the capacity of the buffer Get(n) returns: what holding it
// costs.
func Cap(n int) int {
	if c := class(n); c >= 0 {
		return sizes[c]
	}
	return n
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
		b := (*p)[:n]
		*p = nil
		holders.Put(p)
		return b
	}
	return make([]byte, n, sizes[c])
}

// Put gives b back for reuse. b must have come from Get and must not be
// used afterwards.
func Put(b []byte) {
	c := class(cap(b))
	if c < 0 {
		return
	}
	if cap(b) != sizes[c] {
		panic("bufpool: Put of a slice Get did not make")
	}
	p := holders.Get().(*[]byte)
	*p = b[:cap(b)]
	pools[c].Put(p)
}

// holders keeps the boxes pools keep slices in (a sync.Pool holds
// pointers: a slice put there as it is would be boxed, an allocation per
// Put), emptied, for the next Put.
var holders = sync.Pool{New: func() any { return new([]byte) }}
