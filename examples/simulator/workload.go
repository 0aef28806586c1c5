package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// The workload of every node: gossip every 100 ms (examples/gossip) and
// -rate database writes per second, each replicated to 3 nodes with a
// quorum of 2 (examples/replication), on a key space of numKeys keys.
const (
	numKeys = 1000
	// maxWritesInFlight bounds a node's concurrent writes, as a database
	// bounds its clients' requests; beyond it writes are skipped, counted.
	maxWritesInFlight = 512
	maxValueSize      = 4 << 20
	writeTick         = 10 * time.Millisecond
)

var keys = func() []string {
	k := make([]string, numKeys)
	for i := range k {
		k[i] = fmt.Sprintf("key-%04d", i)
	}
	return k
}()

// valueSize draws a value's size around typical: half to one and a half
// times it for 90% of writes, 8 to 16 times it for 8%, and 96 KiB to 1 MiB
// for 2%, so that the large lane always carries some. Sizes within 4 KiB of
// the 64 KiB lane threshold are moved out of that band: the report tells a
// request's lane from its size, and the header adds a few bytes.
func valueSize(r *rand.Rand, typical int) int {
	var size int
	switch p := r.IntN(100); {
	case p < 90:
		size = typical/2 + r.IntN(typical+1)
	case p < 98:
		size = 8*typical + r.IntN(8*typical+1)
	default:
		size = 96<<10 + r.IntN(1<<20-96<<10+1)
	}
	const band = 4 << 10
	if size > routing.DefaultThreshold-band && size <= routing.DefaultThreshold+band {
		if size <= routing.DefaultThreshold {
			size = routing.DefaultThreshold - band
		} else {
			size = routing.DefaultThreshold + band + 1
		}
	}
	return max(size, 1)
}

// valuePool returns random bytes that values are cut from: writes share
// it, read-only (the transport may hold a value until it is written; the
// stores copy what they keep).
func valuePool(seed uint64, typical int) []byte {
	pool := make([]byte, max(2<<20, 16*typical+1))
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(pool)
	return pool
}

// runWorkload drives the node's gossip and writes until ctx ends. Writes
// still running then are left to writes, which the caller waits on.
func (n *simNode) runWorkload(ctx context.Context, seed uint64, pool []byte, writes *sync.WaitGroup) {
	var loops sync.WaitGroup
	loops.Go(func() { n.gossipLoop(ctx) })
	if n.w.opts.rate > 0 {
		loops.Go(func() { n.writeLoop(ctx, rand.New(rand.NewPCG(seed, 0x5eed)), pool, writes) })
	}
	loops.Wait()
}

// gossipLoop runs a gossip round every interval while the node is up.
func (n *simNode) gossipLoop(ctx context.Context) {
	ticker := time.NewTicker(gossip.DefaultInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if inc := n.incarnation(); inc != nil {
			// Not ctx: the run ending must not fail digests being queued.
			inc.gossiper.Round(context.Background())
		}
	}
}

// probeVerb is the simulator's liveness probe: one-way, handled by
// nothing but a count (see probeLoop).
const probeVerb transport.Verb = 300

// probeSizes are the probes' payload sizes, one per lane that has no
// traffic once the writes stop: small, and large (above the router's
// threshold, routing.DefaultThreshold).
var probeSizes = [...]int{64, routing.DefaultThreshold + 1}

// probeInterval is how often probeLoop sends its probes once the writes
// stop: five times per sample, so that a live pair lane shows moving in
// every sample. At one probe per sample, sent just before it (the probes
// and the samples start together), the probe often had not arrived when
// the sample was taken; the sample before had seen the previous one
// arrive, so nothing had arrived for a whole sample with a probe waiting,
// and with -stuck-after 1s a live pair lane was found stuck.
const probeInterval = sampleInterval / 5

// probeLoop sends, every interval while the node is up, one probe to each
// other member on the small lane and one on the large lane. It runs once
// the writes have stopped, while the pair lanes are judged (progress.
// settle): the gossip keeps the urgent lanes moving, the probes the other
// two, so that every live pair lane shows moving and a wedged one shows
// messages waiting. Without them, a pair lane whose last write was counted
// by its receiver before the sampler read its sender (the nodes' Stats
// are read one after another) would read as a message written and never
// arrived, for ever. A probe that fails is counted by the transport
// (Stats), like any message.
func (n *simNode) probeLoop(ctx context.Context, interval time.Duration) {
	probes := make([][]byte, len(probeSizes))
	for i, size := range probeSizes {
		probes[i] = make([]byte, size)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if inc := n.incarnation(); inc != nil {
			for _, peer := range n.w.liveIDs() {
				if peer == n.id {
					continue
				}
				for _, p := range probes {
					// Not ctx: the probes stopping must not fail those queued.
					_ = inc.t.Send(context.Background(), peer, probeVerb, p)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// writeLoop starts -rate writes per second while the node is up.
func (n *simNode) writeLoop(ctx context.Context, r *rand.Rand, pool []byte, writes *sync.WaitGroup) {
	ticker := time.NewTicker(writeTick)
	defer ticker.Stop()
	slots := make(chan struct{}, maxWritesInFlight)
	last := time.Now()
	var due float64 // writes owed; grows with the time elapsed, so late ticks catch up
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			due += now.Sub(last).Seconds() * float64(n.w.opts.rate)
			last = now
		}
		inc := n.incarnation()
		for ; due >= 1; due-- {
			if inc == nil {
				continue // down: its clients go elsewhere
			}
			select {
			case slots <- struct{}{}:
			default:
				n.ledger.writesSkipped.Add(1)
				continue
			}
			key := keys[r.IntN(len(keys))]
			size := min(valueSize(r, n.w.opts.valueSize), len(pool))
			offset := r.IntN(len(pool) - size + 1)
			value := pool[offset : offset+size]
			n.ledger.writesStarted.Add(1)
			writes.Go(func() {
				defer func() { <-slots }()
				start := time.Now()
				// Not ctx: a write started is seen through to its outcome.
				err := inc.replicator.Write(context.Background(), n.replicas(), key, value)
				if err != nil {
					n.ledger.writesFailed.add(classifyWrite(err))
					return
				}
				n.ledger.writesOK.Add(1)
				n.ledger.writeLatency.record(time.Since(start))
			})
		}
	}
}
