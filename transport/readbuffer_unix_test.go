//go:build unix

package transport_test

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// smallReadBuffer is a Dialer whose connections get a receive buffer of
// n bytes (SO_RCVBUF) before they connect, as tcp(7) asks, so that no
// window they advertise outgrows it. Set once connected, it was below the
// window the handshake had already offered: a peer that never read took
// in more than its buffer, and the kernel then dropped what came to it
// past the buffer, acknowledgments included, so the peer's own writes
// stopped moving (the victim's reader waited for a frame whose bytes sat
// in the peer's send queue, its first 8 KiB sent again every RTO as the
// backoff grew; 4 of about 320 runs under load, none of 150 since).
func smallReadBuffer(n int) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}}
}
