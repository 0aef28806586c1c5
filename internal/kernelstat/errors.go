package kernelstat

import (
	"errors"
	"fmt"
	"runtime"
)

var (
	// ErrMalformed is wrapped by every parse error, and by Read when a
	// counter it needs is missing.
	ErrMalformed = errors.New("kernelstat: malformed input")
	// ErrUnsupported is returned (wrapped) by Read on systems other than
	// Linux. It satisfies errors.Is(err, errors.ErrUnsupported).
	ErrUnsupported = fmt.Errorf("kernelstat: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
)

// malformed returns an error wrapping ErrMalformed.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
