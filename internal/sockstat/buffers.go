package sockstat

import (
	"errors"
	"fmt"
	"net"
)

// SetBuffers sets c's send and receive buffer sizes in bytes (SO_SNDBUF,
// SO_RCVBUF); 0 leaves that size, and the kernel's autotuning of it, alone.
// The kernel caps the sizes without saying so; read them back with Buffers.
// Works on every system.
func SetBuffers(c *net.TCPConn, sndbuf, rcvbuf int) error {
	if err := checkSizes(sndbuf, rcvbuf); err != nil {
		return err
	}
	if sndbuf > 0 {
		if err := c.SetWriteBuffer(sndbuf); err != nil {
			return fmt.Errorf("sockstat: SO_SNDBUF: %w", err)
		}
	}
	if rcvbuf > 0 {
		if err := c.SetReadBuffer(rcvbuf); err != nil {
			return fmt.Errorf("sockstat: SO_RCVBUF: %w", err)
		}
	}
	return nil
}

func checkSizes(sndbuf, rcvbuf int) error {
	if sndbuf < 0 || rcvbuf < 0 {
		return errors.New("sockstat: buffer sizes must not be negative")
	}
	return nil
}
