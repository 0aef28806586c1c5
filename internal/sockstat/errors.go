package sockstat

import (
	"errors"
	"fmt"
	"runtime"
)

// ErrUnsupported is returned (wrapped) by the socket calls on systems other
// than Linux. It satisfies errors.Is(err, errors.ErrUnsupported).
var ErrUnsupported = fmt.Errorf("sockstat: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
