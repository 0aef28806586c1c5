package raftinternode_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests, except those of
// raft's NetworkTransport (the control): its Close does not close the
// connections in its pool, so the peer's handleConn goroutines wait on
// them until the process exits.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"))
}
