package transport

import (
	"syscall"
	"time"
)

// threadSleep blocks the calling thread for about d with nanosleep(2), which
// wakes within the kernel's timer slack instead of the runtime poller's
// millisecond. The runtime hands the processor to other goroutines while
// the thread sleeps in the system call.
func threadSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil) // EINTR: the caller rechecks the clock
}
