package coalescing

import (
	"fmt"
	"strings"
	"time"
)

// Strategy names, as accepted by ByName and reported in Stats.Strategy. The
// first four are Cassandra's otc_coalescing_strategy values (CASSANDRA-8692).
const (
	NameDisabled      = "disabled"
	NameFixed         = "fixed"
	NameMovingAverage = "movingavg"
	NameTimeHorizon   = "timehorizon"
	NameAdaptive      = "adaptive"
)

// DefaultName is the strategy the project uses unless configured otherwise.
const DefaultName = NameAdaptive

// Factory makes one Strategy for one connection. A transport calls it once per
// connection it opens; strategies are never shared. A Factory is safe for
// concurrent use.
type Factory func() Strategy

// Names returns the names ByName accepts, sorted.
func Names() []string {
	return []string{NameAdaptive, NameDisabled, NameFixed, NameMovingAverage, NameTimeHorizon}
}

// ByName returns a Factory for the named strategy, for configuration files.
// Names are matched ignoring case and surrounding spaces.
//
// window is the strategy's window (Adaptive: its MaxWindow, with the other
// AdaptiveConfig fields at their defaults; Disabled: ignored). Zero means
// DefaultWindow. A negative window or one above WindowLimit returns an error
// wrapping ErrInvalidConfig; an unknown name, one wrapping ErrUnknownStrategy.
func ByName(name string, window time.Duration) (Factory, error) {
	if window < 0 || window > WindowLimit {
		return nil, fmt.Errorf("%w: window %v outside [0, %v]", ErrInvalidConfig, window, WindowLimit)
	}
	if window == 0 {
		window = DefaultWindow
	}
	switch strings.ToLower(strings.TrimSpace(name)) {
	case NameDisabled:
		return func() Strategy { return NewDisabled() }, nil
	case NameFixed:
		return func() Strategy { return NewFixed(window) }, nil
	case NameMovingAverage:
		return func() Strategy { return NewMovingAverage(window) }, nil
	case NameTimeHorizon:
		return func() Strategy { return NewTimeHorizon(window) }, nil
	case NameAdaptive:
		cfg := DefaultAdaptiveConfig()
		cfg.MaxWindow = window
		return func() Strategy { return NewAdaptive(cfg) }, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownStrategy, name, strings.Join(Names(), ", "))
}
