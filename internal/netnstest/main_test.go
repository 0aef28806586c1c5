package netnstest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines in the test process and, since the
// nodes are this binary re-executed, in every node process after it quits.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
