package coalescing

import "errors"

// ErrUnknownStrategy is returned, wrapped, by ByName for a name that is not
// one of Names().
var ErrUnknownStrategy = errors.New("coalescing: unknown strategy")

// ErrInvalidConfig is returned, wrapped, by ByName for a window out of range
// and by AdaptiveConfig.Validate for a field out of range.
var ErrInvalidConfig = errors.New("coalescing: invalid config")
