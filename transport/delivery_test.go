package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
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

const verbData transport.Verb = 1

// fill is the random material payloads are cut from, so that a payload
// can be checked byte for byte without storing it.
var fill = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 512<<10)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// makePayload encodes sender and seq in the first 12 bytes and fills the
// rest from fill at an offset derived from seq.
func makePayload(sender uint32, seq uint64, size int) []byte {
	p := make([]byte, max(size, 12))
	binary.BigEndian.PutUint32(p[0:4], sender)
	binary.BigEndian.PutUint64(p[4:12], seq)
	off := int(seq % 4096)
	copy(p[12:], fill[off:])
	return p
}

func checkPayload(p []byte) (sender uint32, seq uint64, ok bool) {
	if len(p) < 12 {
		return 0, 0, false
	}
	sender = binary.BigEndian.Uint32(p[0:4])
	seq = binary.BigEndian.Uint64(p[4:12])
	off := int(seq % 4096)
	return sender, seq, bytes.Equal(p[12:], fill[off:off+len(p)-12])
}

// sizeFor spreads sizes across the 64 KiB threshold: mostly small, some
// just below it, some above.
func sizeFor(r *rand.Rand) int {
	switch x := r.IntN(1000); {
	case x < 5:
		return routing.DefaultThreshold + 1 + r.IntN(128<<10)
	case x < 15:
		return routing.DefaultThreshold - 1024 + r.IntN(1024) - 64
	default:
		return 12 + r.IntN(500)
	}
}

// sendRetrying sends, retrying while the lane's queue is full.
func sendRetrying(t testing.TB, tr *transport.Transport, to cluster.NodeID, verb transport.Verb, p []byte) {
	for {
		err := tr.Send(context.Background(), to, verb, p)
		if err == nil {
			return
		}
		if !errors.Is(err, transport.ErrOverloaded) {
			t.Errorf("send to %s: %v", to, err)
			return
		}
		runtime.Gosched()
	}
}

// TestAllPairsDelivery: three nodes each send N messages to each other,
// sizes on both sides of 64 KiB; every message arrives once, intact, and in
// order within its lane.
func TestAllPairsDelivery(t *testing.T) {
	perPair := 100_000
	if testing.Short() {
		perPair = 10_000
	}
	const nodes = 3
	c := newCluster(t, nodes, nil)

	type key struct {
		from cluster.NodeID
		to   int
		lane routing.Lane
	}
	var (
		mu        sync.Mutex
		lastSeq   = map[key]uint64{}
		seen      = make([][]bool, nodes*nodes)
		received  atomic.Int64
		problems  atomic.Int64
		firstFail atomic.Value
	)
	for i := range seen {
		seen[i] = make([]bool, perPair)
	}
	report := func(msg string) {
		problems.Add(1)
		firstFail.CompareAndSwap(nil, msg)
	}
	for i, n := range c.Nodes {
		n.Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			sender, seq, ok := checkPayload(m.Payload)
			if !ok || int(sender) >= nodes || seq >= uint64(perPair) {
				report("corrupt payload")
				return nil, nil
			}
			mu.Lock()
			k := key{m.From, i, m.Lane}
			if last, ok := lastSeq[k]; ok && seq <= last {
				report("out of order within a lane")
			}
			lastSeq[k] = seq
			s := seen[int(sender)*nodes+i]
			if s[seq] {
				report("duplicate")
			}
			s[seq] = true
			mu.Unlock()
			received.Add(1)
			return nil, nil
		}))
	}

	var wg sync.WaitGroup
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(from), uint64(to)))
				for seq := range perPair {
					p := makePayload(uint32(from), uint64(seq), sizeFor(r))
					sendRetrying(t, c.Nodes[from], c.ID(to), verbData, p)
				}
			}()
		}
	}
	wg.Wait()
	want := int64(perPair * nodes * (nodes - 1))
	waitFor(t, 2*time.Minute, "all messages delivered", func() bool { return received.Load() >= want })
	require.Zero(t, problems.Load(), "first problem: %v", firstFail.Load())
	assert.Equal(t, want, received.Load())
	for i := range nodes {
		for j := range nodes {
			if i == j {
				continue
			}
			for seq, ok := range seen[i*nodes+j] {
				if !ok {
					t.Fatalf("message %d from n%d to n%d never arrived", seq, i+1, j+1)
				}
			}
		}
	}
	sumStats := func() transport.ConnStats {
		total := transport.Stats{}
		for _, n := range c.Nodes {
			total.Conns = append(total.Conns, n.Stats().Conns...)
		}
		return total.Total()
	}
	// Writers count a batch after its write returns, possibly after the
	// receiver handled it.
	waitFor(t, 10*time.Second, "writes counted", func() bool { return sumStats().MessagesSent == uint64(want) })
	sum := sumStats()
	assert.Equal(t, uint64(want), sum.MessagesReceived)
	// Send refused some attempts with ErrOverloaded (the sender retried
	// them); nothing was dropped for any other reason.
	sum.Dropped[transport.ReasonOverloaded] = 0
	assert.Zero(t, sum.DroppedTotal(), "dropped: %v", sum.Dropped)
	assert.Zero(t, sum.DroppedInbound, "dropped on arrival")
	assert.Less(t, sum.Writes, sum.MessagesSent, "small messages are batched into fewer writes")
}
