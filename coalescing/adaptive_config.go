package coalescing

import (
	"fmt"
	"math"
	"time"
)

// Defaults and limits of AdaptiveConfig.
const (
	// DefaultFlushBytes is a frame's worth of small messages: 64 KiB, the
	// size above which a message leaves the Small lane (routing.DefaultThreshold).
	DefaultFlushBytes = 64 << 10
	// DefaultFlushMessages is the batch size at which waiting stops paying
	// for itself in syscalls saved: 128 messages share one write.
	DefaultFlushMessages = 128
	// DefaultMinGrowth asks each wait to bring at least one more message.
	DefaultMinGrowth = 1.0
	// DefaultPacketBytes is the TCP payload of one Ethernet packet: a
	// 1500-byte MTU less 20 bytes of IPv4 header and 32 of TCP header with
	// timestamps.
	DefaultPacketBytes = 1448

	maxFlushBytes    = 1 << 30
	maxFlushMessages = 1 << 20
	maxMinGrowth     = 64
)

// AdaptiveConfig configures Adaptive. The zero value of every field means its
// default; DefaultAdaptiveConfig returns them all filled in.
type AdaptiveConfig struct {
	// MaxWindow is the longest Adaptive waits before one write and the
	// ceiling of the window it tunes. Default DefaultWindow (200 µs, the
	// article's otc_coalescing_window_us); range (0, WindowLimit].
	MaxWindow time.Duration

	// FlushBytes: once this many bytes are pending, Wait returns zero, since
	// a full frame gains nothing from waiting. Default DefaultFlushBytes
	// (64 KiB); range [1, 1 GiB].
	FlushBytes int

	// FlushMessages: once this many messages are pending, Wait returns zero.
	// Default DefaultFlushMessages (128); range [1, 2^20].
	FlushMessages int

	// MinGrowth is how much waiting must grow batches to count as paying:
	// over an evaluation period, the messages that arrived during waits must
	// be at least MinGrowth times the number of waits (and at least half
	// what the arrival rate promised for the time waited). 1 means each
	// wait brought one more message. Default DefaultMinGrowth (1); range
	// (0, 64].
	MinGrowth float64

	// PacketBytes is the payload of one packet on the network. Once a
	// throughput trial found that waiting raises throughput (the packet
	// rate binds), Wait returns zero when one more message of the average
	// size would take the pending bytes past PacketBytes: a full packet
	// gains nothing from waiting. Default DefaultPacketBytes
	// (1448); range [1, FlushBytes].
	PacketBytes int
}

// DefaultAdaptiveConfig returns the default configuration, every field set.
func DefaultAdaptiveConfig() AdaptiveConfig {
	return AdaptiveConfig{
		MaxWindow:     DefaultWindow,
		FlushBytes:    DefaultFlushBytes,
		FlushMessages: DefaultFlushMessages,
		MinGrowth:     DefaultMinGrowth,
		PacketBytes:   DefaultPacketBytes,
	}
}

// Validate reports the first field out of range, wrapping ErrInvalidConfig.
// Zero fields are valid: they mean the default.
func (c AdaptiveConfig) Validate() error {
	flushBytes := c.FlushBytes
	if flushBytes == 0 {
		flushBytes = DefaultFlushBytes
	}
	switch {
	case c.MaxWindow < 0 || c.MaxWindow > WindowLimit:
		return fmt.Errorf("%w: MaxWindow %v is negative or above %v", ErrInvalidConfig, c.MaxWindow, WindowLimit)
	case c.FlushBytes < 0 || c.FlushBytes > maxFlushBytes:
		return fmt.Errorf("%w: FlushBytes %d is negative or above %d", ErrInvalidConfig, c.FlushBytes, maxFlushBytes)
	case c.FlushMessages < 0 || c.FlushMessages > maxFlushMessages:
		return fmt.Errorf("%w: FlushMessages %d is negative or above %d", ErrInvalidConfig, c.FlushMessages, maxFlushMessages)
	case math.IsNaN(c.MinGrowth) || c.MinGrowth < 0 || c.MinGrowth > maxMinGrowth:
		return fmt.Errorf("%w: MinGrowth %v is negative, NaN or above %d", ErrInvalidConfig, c.MinGrowth, maxMinGrowth)
	case c.PacketBytes < 0 || c.PacketBytes > flushBytes:
		return fmt.Errorf("%w: PacketBytes %d is negative or above FlushBytes", ErrInvalidConfig, c.PacketBytes)
	}
	return nil
}

// withDefaults returns a copy with zero fields set to their defaults and
// fields out of range replaced: too large by the limit, negative by the
// default.
func (c AdaptiveConfig) withDefaults() AdaptiveConfig {
	d := DefaultAdaptiveConfig()
	if c.MaxWindow <= 0 {
		c.MaxWindow = d.MaxWindow
	}
	c.MaxWindow = min(c.MaxWindow, WindowLimit)
	if c.FlushBytes <= 0 {
		c.FlushBytes = d.FlushBytes
	}
	c.FlushBytes = min(c.FlushBytes, maxFlushBytes)
	if c.FlushMessages <= 0 {
		c.FlushMessages = d.FlushMessages
	}
	c.FlushMessages = min(c.FlushMessages, maxFlushMessages)
	if math.IsNaN(c.MinGrowth) || c.MinGrowth <= 0 {
		c.MinGrowth = d.MinGrowth
	}
	c.MinGrowth = min(c.MinGrowth, maxMinGrowth)
	if c.PacketBytes <= 0 {
		c.PacketBytes = d.PacketBytes
	}
	c.PacketBytes = min(c.PacketBytes, c.FlushBytes)
	return c
}
