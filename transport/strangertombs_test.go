package transport_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestCancelsOfAPeerWithNoConnectionAreNotKept: a node that accepts
// unknown peers keeps each one's entry until a sweep a few seconds after
// it goes quiet. A peer may send cancels for requests not seen yet, and
// the node remembers up to 1024 of them per peer (a cancel may overtake
// its request). Made-up node IDs, each connecting once with a frame of
// 1024 cancels and closing, made each entry hold some 48 KB of such
// cancels until the sweep, memory no limit bounds: a cancel is kept only
// for a request that may still come, on a connection of the peer's, and
// with none left none can.
func TestCancelsOfAPeerWithNoConnectionAreNotKept(t *testing.T) {
	if raceEnabled {
		t.Skip("heap bounds are checked without the race detector")
	}
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
	})
	node := c.Nodes[0]
	var frame []byte
	for i := range wire.MaxBatchMessages {
		frame = wire.AppendHeader(frame, &wire.Header{Flags: wire.FlagCancel, ID: uint64(1<<40 + i), Verb: uint32(verbBlock)})
	}
	frame = append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, frame), frame...)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const ghosts = 400
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range ghosts / 4 {
				conn := dialAs(node.Addr().String(), fmt.Sprintf("ghost-%d-%d", g, i), routing.Urgent)
				if !assert.NotNil(t, conn, "ghost %d-%d refused", g, i) {
					return
				}
				_, err := conn.Write(frame)
				assert.NoError(t, err)
				conn.Close()
			}
		})
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "every ghost's connection ended", func() bool { return node.Stats().InboundConnections == 0 })
	peers := len(node.Stats().Peers)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d ghosts, %d cancels each: %d peer entries left, heap grew by %d bytes", ghosts, wire.MaxBatchMessages, peers, grew)
	require.Positive(t, peers, "setup: measured before the sweep forgot the ghosts")
	// A ghost's entry costs a few KB until the sweep; its cancels, kept,
	// some 48 KB more.
	assert.LessOrEqual(t, grew, int64(ghosts*8<<10), "what ghosts with no connection left hold")
}
