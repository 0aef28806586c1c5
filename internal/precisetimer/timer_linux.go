package precisetimer

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Timer is a one-shot timer. Each expiry sends one value on C, unless one
// is already waiting there; a value on C may be from an expiry before the
// last Reset, so the receiver checks the time. Its methods may be called
// from one goroutine at a time.
type Timer struct {
	C    <-chan struct{}
	c    chan struct{}
	f    *os.File
	fd   int
	done chan struct{} // closed when the reading goroutine has returned
}

// New returns a stopped Timer. Close it to release its descriptor and its
// goroutine.
func New() (*Timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("precisetimer: %w", os.NewSyscallError("timerfd_create", err))
	}
	// A non-blocking descriptor: os.NewFile registers it with the poller,
	// so a Read parks the goroutine rather than a thread.
	c := make(chan struct{}, 1)
	t := &Timer{C: c, c: c, f: os.NewFile(uintptr(fd), "timerfd"), fd: fd, done: make(chan struct{})}
	go t.read()
	return t, nil
}

// read turns each expiry into a value on C until the Timer is closed.
func (t *Timer) read() {
	defer close(t.done)
	var expirations [8]byte // the count of expiries since the last read
	for {
		if _, err := t.f.Read(expirations[:]); err != nil {
			return // closed
		}
		select {
		case t.c <- struct{}{}:
		default:
		}
	}
}

// Reset arms the timer to fire once, d from now (at least a nanosecond),
// replacing any earlier deadline.
func (t *Timer) Reset(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d, 1).Nanoseconds())}
	return t.settime(&spec)
}

// Stop disarms the timer. A value already on C stays there.
func (t *Timer) Stop() error { return t.settime(&unix.ItimerSpec{}) }

func (t *Timer) settime(spec *unix.ItimerSpec) error {
	if err := unix.TimerfdSettime(t.fd, 0, spec, nil); err != nil {
		return fmt.Errorf("precisetimer: %w", os.NewSyscallError("timerfd_settime", err))
	}
	return nil
}

// Close stops the timer and returns once its goroutine has.
func (t *Timer) Close() error {
	err := t.f.Close()
	<-t.done
	return err
}
