package sockstat

import (
	"errors"
	"fmt"
	"math"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SetBuffersRaw is SetBuffers for a socket not yet connected or listening,
// as net.Dialer.Control and net.ListenConfig.Control see it:
//
//	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
//		return sockstat.SetBuffersRaw(c, sndbuf, rcvbuf)
//	}}
func SetBuffersRaw(c syscall.RawConn, sndbuf, rcvbuf int) error {
	if err := checkSizes(sndbuf, rcvbuf); err != nil {
		return err
	}
	var opErr error
	err := c.Control(func(fd uintptr) {
		if sndbuf > 0 {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf); err != nil {
				opErr = fmt.Errorf("sockstat: SO_SNDBUF: %w", err)
				return
			}
		}
		if rcvbuf > 0 {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				opErr = fmt.Errorf("sockstat: SO_RCVBUF: %w", err)
			}
		}
	})
	return errors.Join(wrap(err), opErr)
}

// Buffers returns c's send and receive buffer sizes in bytes as the kernel
// holds them: twice what SetBuffers asked for, capped by net.core.wmem_max
// and net.core.rmem_max, or the autotuned sizes if none was set.
func Buffers(c *net.TCPConn) (sndbuf, rcvbuf int, err error) {
	err = control(c, func(fd int) (err error) {
		if sndbuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
			return fmt.Errorf("sockstat: SO_SNDBUF: %w", err)
		}
		if rcvbuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
			return fmt.Errorf("sockstat: SO_RCVBUF: %w", err)
		}
		return nil
	})
	return sndbuf, rcvbuf, err
}

// SetUserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay
// unacknowledged before the kernel aborts the connection, which then fails
// reads and writes with ETIMEDOUT. It bounds how long a write to a dead peer
// can go unnoticed even when keepalives cannot be sent. d is rounded up to
// whole milliseconds; 0 restores the system default.
func SetUserTimeout(c *net.TCPConn, d time.Duration) error {
	if d < 0 {
		return errors.New("sockstat: negative user timeout")
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxInt32 {
		return errors.New("sockstat: user timeout too long")
	}
	return control(c, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(ms)); err != nil {
			return fmt.Errorf("sockstat: TCP_USER_TIMEOUT: %w", err)
		}
		return nil
	})
}

// UserTimeout returns c's TCP_USER_TIMEOUT; 0 means the system default.
func UserTimeout(c *net.TCPConn) (time.Duration, error) {
	var d time.Duration
	err := control(c, func(fd int) error {
		ms, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if err != nil {
			return fmt.Errorf("sockstat: TCP_USER_TIMEOUT: %w", err)
		}
		d = time.Duration(ms) * time.Millisecond
		return nil
	})
	return d, err
}

// control runs f on c's file descriptor. These calls are not on the hot
// path, so the closures may allocate.
func control(c *net.TCPConn, f func(fd int) error) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return wrap(err)
	}
	var opErr error
	if err := raw.Control(func(fd uintptr) { opErr = f(int(fd)) }); err != nil {
		return wrap(err)
	}
	return opErr
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sockstat: %w", err)
}

// SetNotSentLowat sets TCP_NOTSENT_LOWAT: the socket takes more from a
// writer only while fewer than n of its bytes wait unsent in its send
// queue, so a writer whose peer does not take its bytes keeps them
// rather than the kernel. 0 restores the system default. The option is
// an int32: n above its largest value (2 GiB - 1) sets that.
func SetNotSentLowat(c *net.TCPConn, n int) error {
	if n < 0 {
		return errors.New("sockstat: negative TCP_NOTSENT_LOWAT")
	}
	n = min(n, math.MaxInt32) // setsockopt would keep only the low 32 bits
	return control(c, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n); err != nil {
			return fmt.Errorf("sockstat: TCP_NOTSENT_LOWAT: %w", err)
		}
		return nil
	})
}

// NotSentLowat returns c's TCP_NOTSENT_LOWAT; 0 means none (the
// system default).
func NotSentLowat(c *net.TCPConn) (int, error) {
	var n int
	err := control(c, func(fd int) error {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
		if err != nil {
			return fmt.Errorf("sockstat: TCP_NOTSENT_LOWAT: %w", err)
		}
		if v > 0 {
			n = v
		}
		return nil
	})
	return n, err
}
