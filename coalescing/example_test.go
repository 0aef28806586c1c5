package coalescing_test

import (
	"fmt"
	"time"

	"github.com/internode/internode/coalescing"
)

// A transport reads the strategy's name and window from its configuration
// and makes one strategy per connection.
func ExampleByName() {
	newStrategy, err := coalescing.ByName("movingavg", 0) // 0: DefaultWindow
	if err != nil {
		panic(err)
	}
	perConnection := newStrategy()
	fmt.Println(perConnection.Stats().Strategy, perConnection.Stats().Window)

	_, err = coalescing.ByName("nagle", 0)
	fmt.Println(err)
	// Output:
	// movingavg 200µs
	// coalescing: unknown strategy "nagle" (known: adaptive, disabled, fixed, movingavg, timehorizon)
}

// The article's doubling rule: with messages 10µs apart, one pending message is
// expected to double in 10µs; the wait doubles while twice it still fits in
// the 200µs window: 10, 20, 40, 80, 160µs.
func ExampleNewMovingAverage() {
	s := coalescing.NewMovingAverage(200 * time.Microsecond)
	now := time.Unix(0, 0)
	for range 17 { // 16 gaps of 10µs
		now = now.Add(10 * time.Microsecond)
		s.Observe(now, 100)
	}
	fmt.Println(s.Wait(now, 1, 100))
	fmt.Println(s.Wait(now, coalescing.EnoughMessages, 800)) // a full batch goes at once
	// Output:
	// 160µs
	// 0s
}

// The writer's loop, driven here by hand: Observe what it takes, ask Wait,
// write, report Flushed. Adaptive waits on a busy connection, writes at once
// when a frame's worth is pending, and never waits on a quiet one.
func ExampleNewAdaptive() {
	s := coalescing.NewAdaptive(coalescing.DefaultAdaptiveConfig())
	now := time.Unix(0, 0)

	// Busy: a message every 10µs.
	for range 17 {
		now = now.Add(10 * time.Microsecond)
		s.Observe(now, 100)
	}
	wait := s.Wait(now, 1, 100)
	fmt.Println("busy, one pending:", wait)
	fmt.Println("busy, a frame pending:", s.Wait(now, 20, 64<<10))
	now = now.Add(wait)
	s.Flushed(now, 6, 600, wait, wait)

	// Quiet: a message every 5ms.
	for range 17 {
		now = now.Add(5 * time.Millisecond)
		s.Observe(now, 100)
	}
	fmt.Println("quiet, one pending:", s.Wait(now, 1, 100))

	st := s.Stats()
	fmt.Println("window:", st.Window, "average gap:", st.AverageGap)
	// Output:
	// busy, one pending: 50µs
	// busy, a frame pending: 0s
	// quiet, one pending: 0s
	// window: 50µs average gap: 5ms
}

// Stats tell what a strategy did: how often it waited, how long it asked
// for, and how long the writer really waited (sleeps overshoot).
func ExampleStats() {
	s := coalescing.NewFixed(200 * time.Microsecond)
	now := time.Unix(0, 0)
	for i := range 3 {
		s.Observe(now, 100)
		wait := s.Wait(now, 1, 100)
		observed := wait + time.Duration(i)*30*time.Microsecond // the timer fired late
		now = now.Add(observed)
		s.Flushed(now, 1, 100, wait, observed)
	}
	st := s.Stats()
	fmt.Println(st.Writes, st.Waited, st.RequestedWait, st.ObservedWait)
	// Output:
	// 3 3 600µs 690µs
}
