package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestARequestThatOutlivesALeaveAndJoinIsNotFailedAndDelivered: a Request
// to n2 is registered (its call waits for the response), then n2 leaves
// and joins again, back to back (a restart, a flap), before the request
// reaches a lane; the request then goes to n2's new entry, is written and
// handled. The Leave had already failed the call with ErrPeerLeft: the
// caller was told its request was lost while n2's handler ran it, and its
// response was thrown away. A caller that retries elsewhere on
// ErrPeerLeft runs the operation twice.
func TestARequestThatOutlivesALeaveAndJoinIsNotFailedAndDelivered(t *testing.T) {
	var handled atomic.Int64
	n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		handled.Add(1)
		return []byte("done"), nil
	}))
	n2m := cluster.Member{ID: "n2", Addr: n2.Addr().String()}
	static := cluster.NewStatic(n2m)
	members := &hookedMembership{Static: static}
	n1 := startNode(t, "n1", members, nil)

	// The Request's call is in the table when its send looks n2 up:
	// n2 leaves and rejoins right then.
	members.arm("n2", func() {
		static.Remove("n2")
		static.Add(n2m)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n1.Request(ctx, "n2", 1, []byte("x"))
	if err != nil {
		// Failed at once: wait for the request to reach n2's handler.
		require.Eventually(t, func() bool { return handled.Load() == 1 }, 5*time.Second, time.Millisecond,
			"the call failed (%v) and its request was not handled", err)
	}
	assert.NoError(t, err, "the call failed, while n2 handled its request (handled %d)", handled.Load())
	assert.Equal(t, "done", string(resp))
	assert.Equal(t, int64(1), handled.Load())
}
