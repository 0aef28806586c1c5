//go:build !unix

package transport_test

import (
	"testing"
	"time"
)

// cpuTime skips the test: the process's CPU time is read with getrusage,
// which this system lacks.
func cpuTime(t *testing.T) time.Duration {
	t.Skip("no getrusage on this system to read the process's CPU time")
	return 0
}
