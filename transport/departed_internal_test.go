package transport

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// TestADepartedEntryCountsAReaderHandlerThatEndsAfterItIsFolded: as
// TestADepartedEntryCountsWhatEndsAfterItIsFolded, for a ReaderHandler. A
// streamed large message gives its room back once its last part is fed
// to its handler (deliverLarge), and the handler may run on long after:
// nothing of the peer's entry says so, so quiet() holds while it runs,
// and the entry is folded away (addDeparted, pruneDeparted). What the
// handler then counts — its error, or its response — lands on an entry
// no longer in Stats.
func TestADepartedEntryCountsAReaderHandlerThatEndsAfterItIsFolded(t *testing.T) {
	static2 := cluster.NewStatic()
	n2 := startNode(t, "n2", static2, nil)
	read, gate := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the nodes close, which wait for the handler
	n2.HandleReader(1, ReaderHandlerFunc(func(ctx context.Context, m *Message, body io.Reader) ([]byte, error) {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, err
		}
		read <- struct{}{}
		<-gate
		return nil, errors.New("failed after reading it all")
	}))
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), nil)
	n1Member := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	static2.Add(n1Member)

	require.NoError(t, n1.Send(context.Background(), "n2", 1, make([]byte, 1<<20))) // large: streamed
	within(t, read, 5*time.Second, "the handler read the message")
	first := n2.peerStats("n1")
	require.NotNil(t, first)

	static2.Remove("n1") // n1 leaves while its message's handler runs
	eventually(t, func() bool { return first.inConnsTotal() == 0 }, "n1's connections to n2 ended")
	static2.Add(n1Member)
	require.NoError(t, n2.Send(context.Background(), "n1", 2, []byte("hello"))) // a new entry for n1
	eventually(t, func() bool { return n2.Stats().Total().MessagesSent > 0 }, "n2's message to n1 written")
	static2.Remove("n1") // n1 leaves again: its first entry, quiet, folds into the second

	open() // the handler fails
	eventually(t, func() bool { return first.inbound[routing.Large].handlerErrors.Load() == 1 }, "the handler's error counted")
	assert.Equal(t, uint64(1), n2.Stats().Total().HandlerErrors, "the handler's error, in Stats")
	n2.forgetQuietStrangers() // the janitor: the first entry, quiet now, folds into the second
	assert.Equal(t, uint64(1), n2.Stats().Total().HandlerErrors, "and its count with it")
}

// TestCoalescingCountsDoNotGoBackWhenAnEarlierEntryIsPruned: a node that
// left twice, its first entry still busy at the second Leave, has two
// departed entries; Stats merges them, and takes ConnStats.Coalescing
// (not summed) from the first listed: the earlier entry's. Once that
// entry is quiet the janitor drops it (pruneDeparted), moving its
// counters but not its strategies' counts, and Stats reads the latest
// entry's instead: Coalescing.Writes went back. (Before the entries were
// kept apart, the latest entry replaced the earlier one at the Leave:
// the lane's figures stayed the latest entry's throughout.)
func TestCoalescingCountsDoNotGoBackWhenAnEarlierEntryIsPruned(t *testing.T) {
	static2 := cluster.NewStatic()
	n2 := startNode(t, "n2", static2, nil)
	started, gate := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		started <- struct{}{}
		<-gate
		return nil, nil
	}))
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), nil)
	n1Member := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	static2.Add(n1Member)
	writes := func() uint64 {
		for _, cs := range n2.Stats().Conns {
			if cs.Peer == "n1" && cs.Lane == routing.Small {
				return cs.Coalescing.Writes
			}
		}
		return 0
	}
	sendTo1 := func(n int) {
		for range n {
			before := n2.Stats().Total().MessagesSent
			require.NoError(t, n2.Send(context.Background(), "n1", 2, []byte("x")))
			eventually(t, func() bool { return n2.Stats().Total().MessagesSent > before }, "the message written")
		}
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := n1.Request(ctx, "n2", 1, []byte("q"))
		done <- err
	}()
	within(t, started, 5*time.Second, "the handler") // keeps n1's first entry busy
	first := n2.peerStats("n1")
	sendTo1(3)
	static2.Remove("n1")
	static2.Add(n1Member)
	sendTo1(1) // a new entry for n1
	static2.Remove("n1")
	eventually(t, func() bool { return writes() > 0 }, "the writes counted")
	before := writes()

	open()
	<-done
	eventually(t, first.quiet, "n1's first entry quiet")
	n2.forgetQuietStrangers() // the janitor drops it
	n2.peersMu.RLock()
	departed := len(n2.departed)
	n2.peersMu.RUnlock()
	require.Equal(t, 1, departed, "the first entry folded into the second")
	assert.GreaterOrEqual(t, writes(), before, "Coalescing.Writes went back when the earlier entry was pruned")
}
