// Package precisetimer is a one-shot timer that fires within microseconds
// of its deadline even when the process is otherwise idle.
//
// The runtime's timers cannot promise that: with nothing else to run, the
// Go scheduler sleeps in epoll_wait(2), whose timeout is in whole
// milliseconds, so a 200 µs time.Timer fires after about 1.1 ms. A Timer
// here is a Linux timerfd (timerfd_create(2), CLOCK_MONOTONIC) read
// through the runtime's network poller: the kernel's high-resolution
// timer makes the descriptor readable at the deadline, which ends the
// poller's epoll_wait at once, and a goroutine of the Timer's own turns
// each expiry into a value on C. Nothing holds a processor or a thread
// while it waits.
//
// Elsewhere a Timer is a time.Timer with the same interface, no more
// precise than one.
package precisetimer
