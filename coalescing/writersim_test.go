package coalescing

import (
	"math/rand/v2"
	"time"
)

// arrival is one message enqueued on a connection.
type arrival struct {
	at   time.Time
	size int
}

// ask is one Wait call the simulated writer made.
type ask struct {
	now          time.Time
	pending      int
	pendingBytes int
	window       time.Duration // Stats().Window just before the call
	answer       time.Duration
}

// write is one write the simulated writer made.
type write struct {
	messages, bytes     int
	requested, observed time.Duration
	done                time.Time     // when the write finished
	window              time.Duration // Stats().Window just after Flushed
	latency             time.Duration // summed over its messages: done − enqueued
}

// simulateWriter plays arrivals through s the way the transport's writer
// drives a strategy: take everything queued, ask Wait, wait for at most the
// answer while asking again after each arrival, write (writeCost), report
// Flushed.
func simulateWriter(s Strategy, arrivals []arrival, writeCost time.Duration) (asks []ask, writes []write) {
	window := func() time.Duration { return s.Stats().Window }
	if a, ok := s.(*Adaptive); ok {
		window = func() time.Duration { return a.window } // cheaper than copying Stats under -race
	}
	next := 0
	var now time.Time
	for next < len(arrivals) {
		if now.Before(arrivals[next].at) {
			now = arrivals[next].at // idle until work arrives
		}
		first := next
		var pending, pendingBytes int
		take := func() {
			for next < len(arrivals) && !arrivals[next].at.After(now) {
				s.Observe(arrivals[next].at, arrivals[next].size)
				pending++
				pendingBytes += arrivals[next].size
				next++
			}
		}
		askWait := func() time.Duration {
			a := ask{now: now, pending: pending, pendingBytes: pendingBytes, window: window()}
			a.answer = s.Wait(now, pending, pendingBytes)
			asks = append(asks, a)
			return a.answer
		}
		take()
		start := now
		requested := askWait()
		for wait := requested; wait > 0; {
			deadline := now.Add(wait)
			if next >= len(arrivals) || arrivals[next].at.After(deadline) {
				now = deadline
				break
			}
			now = arrivals[next].at
			take()
			wait = askWait()
		}
		observed := now.Sub(start)
		now = now.Add(writeCost)
		s.Flushed(now, pending, pendingBytes, requested, observed)
		w := write{messages: pending, bytes: pendingBytes, requested: requested, observed: observed, done: now, window: window()}
		for _, a := range arrivals[first:next] {
			w.latency += now.Sub(a.at)
		}
		writes = append(writes, w)
	}
	return asks, writes
}

// poissonTrace returns n arrivals with exponential gaps of the given mean
// and sizes drawn uniformly from [minSize, maxSize].
func poissonTrace(rng *rand.Rand, n int, meanGap time.Duration, minSize, maxSize int) []arrival {
	arrivals := make([]arrival, n)
	at := t0
	for i := range arrivals {
		at = at.Add(time.Duration(rng.ExpFloat64() * float64(meanGap)))
		arrivals[i] = arrival{at: at, size: minSize + rng.IntN(maxSize-minSize+1)}
	}
	return arrivals
}

// mixedTrace returns n arrivals in phases of random kinds: dense, sparse,
// bursts of simultaneous messages, and long silences.
func mixedTrace(rng *rand.Rand, n int) []arrival {
	arrivals := make([]arrival, 0, n)
	at := t0
	for len(arrivals) < n {
		phase := min(1+rng.IntN(200), n-len(arrivals))
		kind := rng.IntN(4)
		meanGap := []time.Duration{us(1 + rng.Float64()*20), us(500 + rng.Float64()*20000), 0, 0}[kind]
		if kind == 3 {
			at = at.Add(time.Duration(rng.Int64N(int64(3 * time.Second))))
		}
		for range phase {
			at = at.Add(time.Duration(rng.ExpFloat64() * float64(meanGap)))
			arrivals = append(arrivals, arrival{at: at, size: 1 + rng.IntN(16<<10)})
		}
	}
	return arrivals
}
