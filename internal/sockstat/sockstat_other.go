//go:build !linux

package sockstat

import (
	"net"
	"syscall"
	"time"
)

// Probe reads a socket's queues; on this system every call returns an error
// wrapping ErrUnsupported. It is safe for concurrent use.
type Probe struct{}

// NewProbe returns a Probe whose calls fail with ErrUnsupported.
func NewProbe(c syscall.Conn) (*Probe, error) { return &Probe{}, nil }

// SendQueue returns ErrUnsupported on this system.
func (p *Probe) SendQueue() (int, error) { return 0, ErrUnsupported }

// RecvQueue returns ErrUnsupported on this system.
func (p *Probe) RecvQueue() (int, error) { return 0, ErrUnsupported }

// Info returns ErrUnsupported on this system.
func (p *Probe) Info() (TCPInfo, error) { return TCPInfo{}, ErrUnsupported }

// SendQueue returns ErrUnsupported on this system.
func SendQueue(c syscall.RawConn) (int, error) { return 0, ErrUnsupported }

// RecvQueue returns ErrUnsupported on this system.
func RecvQueue(c syscall.RawConn) (int, error) { return 0, ErrUnsupported }

// Info returns ErrUnsupported on this system.
func Info(c syscall.RawConn) (TCPInfo, error) { return TCPInfo{}, ErrUnsupported }

// SetBuffersRaw returns ErrUnsupported on this system; use SetBuffers once
// connected.
func SetBuffersRaw(c syscall.RawConn, sndbuf, rcvbuf int) error { return ErrUnsupported }

// Buffers returns ErrUnsupported on this system.
func Buffers(c *net.TCPConn) (sndbuf, rcvbuf int, err error) { return 0, 0, ErrUnsupported }

// SetUserTimeout returns ErrUnsupported on this system.
func SetUserTimeout(c *net.TCPConn, d time.Duration) error { return ErrUnsupported }

// UserTimeout returns ErrUnsupported on this system.
func UserTimeout(c *net.TCPConn) (time.Duration, error) { return 0, ErrUnsupported }

// SetNotSentLowat is Linux-only.
func SetNotSentLowat(c *net.TCPConn, n int) error { return ErrUnsupported }

// NotSentLowat is Linux-only.
func NotSentLowat(c *net.TCPConn) (int, error) { return 0, ErrUnsupported }
