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
	// DefaultMinGrowth asks waits to double batches, the seed's rule.
	DefaultMinGrowth = 1.0

	maxFlushBytes    = 1 << 30
	maxFlushMessages = 1 << 20
	maxMinGrowth     = 64
)

// AdaptiveConfig configures Adaptive. The zero value of every field means its
// default; DefaultAdaptiveConfig returns them all filled in.
type AdaptiveConfig struct {
	// MaxWindow is the longest Adaptive waits before one write and the
	// ceiling of the window it tunes. Default DefaultWindow (200 µs, the
	// seed's otc_coalescing_window_us); range (0, WindowLimit].
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
	// be at least MinGrowth times the messages pending when the waits began.
	// 1 means waits at least doubled the batches. Default DefaultMinGrowth
	// (1); range (0, 64].
	MinGrowth float64
}

// DefaultAdaptiveConfig returns the default configuration, every field set.
func DefaultAdaptiveConfig() AdaptiveConfig {
	return AdaptiveConfig{
		MaxWindow:     DefaultWindow,
		FlushBytes:    DefaultFlushBytes,
		FlushMessages: DefaultFlushMessages,
		MinGrowth:     DefaultMinGrowth,
	}
}

// Validate reports the first field out of range, wrapping ErrInvalidConfig.
// Zero fields are valid: they mean the default.
func (c AdaptiveConfig) Validate() error {
	switch {
	case c.MaxWindow < 0 || c.MaxWindow > WindowLimit:
		return fmt.Errorf("%w: MaxWindow %v is negative or above %v", ErrInvalidConfig, c.MaxWindow, WindowLimit)
	case c.FlushBytes < 0 || c.FlushBytes > maxFlushBytes:
		return fmt.Errorf("%w: FlushBytes %d is negative or above %d", ErrInvalidConfig, c.FlushBytes, maxFlushBytes)
	case c.FlushMessages < 0 || c.FlushMessages > maxFlushMessages:
		return fmt.Errorf("%w: FlushMessages %d is negative or above %d", ErrInvalidConfig, c.FlushMessages, maxFlushMessages)
	case math.IsNaN(c.MinGrowth) || c.MinGrowth < 0 || c.MinGrowth > maxMinGrowth:
		return fmt.Errorf("%w: MinGrowth %v is negative, NaN or above %d", ErrInvalidConfig, c.MinGrowth, maxMinGrowth)
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
	return c
}
