package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestACancelledQueuedRequestIsWithdrawn: requests queued on the small lane
// behind a peer that stopped reading, whose callers cancel them or whose
// deadlines pass before the writer reaches them, are withdrawn at once:
// counted once each (cancelled or expired), their capacity given back
// while the peer still reads nothing, no cancel sent for them, and once
// the peer reads again none of them is written: its handler sees only the
// requests whose callers waited.
func TestACancelledQueuedRequestIsWithdrawn(t *testing.T) {
	const (
		verbWork transport.Verb = 251
		verbFill transport.Verb = 252
		fillers                 = 64   // of 32 KiB: 2 MiB, far more than the sockets and the proxy hold
		requests                = 3300 // a third cancelled: more than the peer remembers cancels of requests not seen yet (1024)
	)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 30 * time.Second // n2 hears nothing of n1's while paused
	})
	var seen counter[uint32]
	var handled atomic.Int64
	c.Nodes[1].Handle(verbWork, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		seen.add(binary.BigEndian.Uint32(m.Payload))
		handled.Add(1)
		return []byte("ok"), nil
	}))
	var filled atomic.Int64
	c.Nodes[1].Handle(verbFill, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		filled.Add(1)
		return nil, nil
	}))
	proxy := newPausableProxy(t, c.Nodes[1].Addr().String())
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy.addr}) // n1 reaches n2 through the proxy
	n1, to := c.Nodes[0], c.ID(1)
	payload := func(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }
	_, err := n1.Request(ctxTimeout(t, 10*time.Second), to, verbWork, payload(requests)) // the small lane's connection
	require.NoError(t, err)
	small := func() transport.ConnStats { return laneStats(t, n1, string(to), routing.Small) }

	proxy.up.pause() // n2 reads nothing more of n1's
	for range fillers {
		require.NoError(t, n1.Send(ctxTimeout(t, 10*time.Second), to, verbFill, make([]byte, 32<<10)))
	}
	// Requests 0..requests-1: i%3 == 0 cancelled, i%3 == 1 expire (a
	// deadline well past the moment they are all queued), i%3 == 2
	// waited for.
	ctx := ctxTimeout(t, 20*time.Second)
	cancels := make([]context.CancelFunc, requests)
	results := make([]chan error, requests)
	for i := range requests {
		rctx, cancel := context.WithCancel(ctx)
		if i%3 == 1 {
			rctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		}
		cancels[i], results[i] = cancel, make(chan error, 1)
		go func() {
			_, err := n1.Request(rctx, to, verbWork, payload(i))
			results[i] <- err
		}()
	}
	t.Cleanup(func() {
		for _, cancel := range cancels {
			cancel()
		}
	})
	waitFor(t, 10*time.Second, "the requests queued behind the fillers", func() bool {
		return transport.QueuedRequests(n1, to, routing.Small) == requests
	})
	before := small()
	for i := 0; i < requests; i += 3 {
		cancels[i]()
	}
	for i := range requests {
		switch i % 3 {
		case 0:
			assert.ErrorIs(t, within(t, results[i], 10*time.Second, "a cancelled request"), context.Canceled)
		case 1:
			assert.ErrorIs(t, within(t, results[i], 10*time.Second, "an expired request"), context.DeadlineExceeded)
		}
	}
	// The peer still reads nothing: what they held must be back now.
	cancelled, expired := uint64((requests+2)/3), uint64((requests+1)/3)
	now := small()
	assert.Equal(t, cancelled, now.Dropped[transport.ReasonCanceled], "each cancelled request counted once, at once")
	assert.Equal(t, expired, now.Dropped[transport.ReasonExpired], "each expired request counted once, at once")
	assert.Equal(t, before.PendingMessages-cancelled-expired, now.PendingMessages, "withdrawn from the queue")
	assert.Less(t, now.PendingBytes, before.PendingBytes, "their capacity given back")
	assert.Equal(t, requests/3, transport.QueuedRequests(n1, to, routing.Small), "the requests waited for still queued")

	proxy.up.resume()
	for i := 2; i < requests; i += 3 {
		require.NoError(t, within(t, results[i], 10*time.Second, "a request waited for"))
	}
	waitFor(t, 10*time.Second, "the fillers handled", func() bool { return filled.Load() == fillers })
	// A write is counted once it returns, which may be after the peer
	// answered what it carried.
	var end transport.ConnStats
	assert.Eventually(t, func() bool {
		end = small()
		return end.PendingBytes == 0
	}, 10*time.Second, time.Millisecond, "every write counted")
	assert.Equal(t, cancelled, end.Dropped[transport.ReasonCanceled], "counted once")
	assert.Equal(t, expired, end.Dropped[transport.ReasonExpired], "counted once")
	assert.Equal(t, uint64(1+fillers+requests/3), end.MessagesSent, "none given up was written")
	assert.Equal(t, int64(1+requests/3), handled.Load(), "the handler ran only the requests waited for")
	seen.mu.Lock()
	for i, n := range seen.m {
		if int(i) < requests {
			assert.Equal(t, 2, int(i)%3, "request %d given up, yet handled", i)
		}
		assert.Equal(t, 1, n, "request %d handled once", i)
	}
	seen.mu.Unlock()
	for _, cs := range n1.Stats().Conns {
		if cs.Lane == routing.Urgent {
			assert.Zero(t, cs.MessagesSent, "no cancel sent: nothing of the withdrawn requests reached the peer")
		}
	}
	in := c.Nodes[1].Stats().Total()
	assert.Zero(t, in.DroppedInbound[transport.ReasonCanceled], "no cancelled request reached the peer")
	assert.Zero(t, in.DroppedInbound[transport.ReasonExpired], "no expired request reached the peer")
}

// TestCancelRacesTheWriter hammers a request's cancel against its write on
// a busy small lane: every request ends in exactly one outcome, counted
// once on the lane (written, or withdrawn as cancelled), and a request
// withdrawn unwritten never reaches the handler. The totals must add up:
// written requests plus withdrawn ones are all the requests.
func TestCancelRacesTheWriter(t *testing.T) {
	const verbWork transport.Verb = 253
	const callers, rounds = 8, 300
	c := newCluster(t, 2, nil)
	var handled atomic.Int64
	c.Nodes[1].Handle(verbWork, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		handled.Add(1)
		return nil, nil
	}))
	n1, to := c.Nodes[0], c.ID(1)
	_, err := n1.Request(ctxTimeout(t, 10*time.Second), to, verbWork, []byte("warm"))
	require.NoError(t, err)
	// Its write is counted once the write returns, which may be after
	// its response came back.
	var base transport.ConnStats
	waitFor(t, 10*time.Second, "the first request counted", func() bool {
		base = laneStats(t, n1, string(to), routing.Small)
		return base.MessagesSent == 1
	})

	var outcomes [3]atomic.Int64 // ok, cancelled, other
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 64+w*512) // some requests fill segments faster
			for i := range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() {
					_, err := n1.Request(ctx, to, verbWork, payload)
					done <- err
				}()
				if i%2 == 0 {
					cancel() // at once: mostly still queued
				} else {
					go cancel() // a moment later: mostly in the writer's hands
				}
				err := <-done
				cancel()
				switch {
				case err == nil:
					outcomes[0].Add(1)
				case errors.Is(err, context.Canceled):
					outcomes[1].Add(1)
				default:
					outcomes[2].Add(1)
					t.Errorf("request failed: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	total := int64(callers * rounds)
	require.Equal(t, total, outcomes[0].Load()+outcomes[1].Load()+outcomes[2].Load(), "one outcome each")
	// A request withdrawn is counted cancelled and never written; every
	// other was written (a completed one, or one cancelled after its
	// write), and a written one is handled unless its cancel stopped it.
	var st transport.ConnStats
	if !assert.Eventually(t, func() bool {
		st = laneStats(t, n1, string(to), routing.Small)
		return int64(st.MessagesSent-base.MessagesSent)+int64(st.Dropped[transport.ReasonCanceled]) == total &&
			st.PendingMessages == 0 && st.PendingBytes == 0
	}, 10*time.Second, time.Millisecond, "every request written or withdrawn") {
		t.Fatalf("%d requests: written %d, dropped %v, pending %d (%d bytes)", total,
			st.MessagesSent-base.MessagesSent, st.Dropped, st.PendingMessages, st.PendingBytes)
	}
	withdrawn := int64(st.Dropped[transport.ReasonCanceled])
	assert.LessOrEqual(t, withdrawn, outcomes[1].Load(), "only requests whose callers gave up are withdrawn")
	for r := range transport.NumReasons {
		if r != transport.ReasonCanceled {
			assert.Zero(t, st.Dropped[r]-base.Dropped[r], "no other drop: %s", r)
		}
	}
	// Every request that returned successfully was handled; every
	// withdrawn one was not: handled ≤ written (as the others may be
	// stopped by their cancels).
	waitFor(t, 10*time.Second, "the completed requests handled", func() bool {
		return handled.Load()-1 >= outcomes[0].Load()
	})
	assert.LessOrEqual(t, handled.Load()-1, total-withdrawn, "a withdrawn request never reaches the handler")
	t.Logf("%d requests: %d completed, %d cancelled (%d withdrawn unwritten), %d handled",
		total, outcomes[0].Load(), outcomes[1].Load(), withdrawn, handled.Load()-1)
}
