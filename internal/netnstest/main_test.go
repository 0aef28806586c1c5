package netnstest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines in the test process and, since the
// nodes are this binary re-executed, in every node process after it quits.
//
// A probe memberlist began before Shutdown may still be waiting out its
// timeout afterwards (up to 8 x ProbeInterval while the node's health score
// is poor, as after a partition): it ends by itself, so it is not a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
