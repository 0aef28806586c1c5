package kernelstat

import (
	"errors"
	"fmt"
	"runtime"
)

var (
	// ErrMalformed is wrapped by Read's error when the files parse but a
	// counter it needs is missing. (Files that do not parse give procfs'
	// errors, wrapped with the file's name.)
	ErrMalformed = errors.New("kernelstat: malformed input")
	// ErrUnsupported is returned (wrapped) by Read on systems other than
	// Linux. It satisfies errors.Is(err, errors.ErrUnsupported).
	ErrUnsupported = fmt.Errorf("kernelstat: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
)

// malformed returns an error wrapping ErrMalformed.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
