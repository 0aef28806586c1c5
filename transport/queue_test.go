package transport

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

func TestQueueTakesSegmentsInOrder(t *testing.T) {
	var q outQueue
	// Big enough that the queue starts new segments.
	sizes := make([]int, 40)
	for i := range sizes {
		sizes[i] = 16 << 10
	}
	queueMessages(t, &q, sizes, nil, true)
	messages, bytes := q.pending()
	assert.Equal(t, 40, messages)
	assert.Greater(t, bytes, 40*16<<10)
	var seen []uint64
	segments := 0
	for {
		b, _ := q.take()
		if b == nil {
			break
		}
		segments++
		assert.LessOrEqual(t, len(b.buf.B), segmentBytes+(16<<10)+64, "a segment is at most segmentBytes and one message")
		for _, it := range b.items {
			seen = append(seen, it.id)
		}
		q.release(b)
	}
	assert.Greater(t, segments, 1)
	for i, id := range seen {
		assert.Equal(t, uint64(i+1), id)
	}
	assert.Zero(t, q.held(), "nothing reserved once released")
}

func TestQueuePruneKeepsOrderAndCounts(t *testing.T) {
	var q outQueue
	queueMessages(t, &q, []int{1, 2, 3, 4, 5, 6}, map[int]int64{1: 10, 3: 10, 5: 10}, true)
	before := q.held()
	msgs, removed := q.prune(func(it *outItem) bool { return it.expired(100) })
	var dropped []uint64
	for _, m := range msgs {
		dropped = append(dropped, m.id)
		assert.Len(t, m.payload, int(m.id), "the payload is at hand")
	}
	assert.Equal(t, []uint64{2, 4, 6}, dropped)
	assert.Equal(t, int64(before-q.held()), removed)
	b, _ := q.take()
	var kept []uint64
	for _, it := range b.items {
		kept = append(kept, it.id)
	}
	assert.Equal(t, []uint64{1, 3, 5}, kept)
}

func TestQueueObservesEachMessageOnce(t *testing.T) {
	var q outQueue
	queueMessages(t, &q, []int{1, 2, 3}, nil, true)
	var observed []uint64
	n, _, _ := q.observeNew(func(it *outItem) { observed = append(observed, it.id) })
	assert.Equal(t, 3, n)
	queueMessages(t, &q, []int{4}, nil, true) // ids restart at 1: the fourth is id 1
	q.observeNew(func(it *outItem) { observed = append(observed, it.id) })
	assert.Equal(t, []uint64{1, 2, 3, 1}, observed)
	_, already := q.take()
	assert.Equal(t, 4, already, "the writer knows they were all shown to the strategy")
}

func TestQueueShutAndRetire(t *testing.T) {
	var q outQueue
	queueMessages(t, &q, []int{1}, nil, true)
	assert.False(t, q.retireIfEmpty(errRetired), "not empty")
	boom := errors.New("stopped")
	batches := q.shut(boom)
	require.Len(t, batches, 1)
	h := wire.Header{ID: 9, PayloadLength: 0}
	_, err := q.push(outItem{id: 9}, wire.AppendHeader(nil, &h), nil, true)
	assert.ErrorIs(t, err, boom, "a shut queue refuses")

	var r outQueue
	assert.True(t, r.retireIfEmpty(errRetired))
	_, err = r.push(outItem{id: 9}, wire.AppendHeader(nil, &h), nil, true)
	assert.ErrorIs(t, err, errRetired)
}

// TestQueueBytesMatchTheCapacityTaken is the property the writer relies
// on: whatever mix of pushes, takes, releases and prunes, the bytes the
// queue says it holds are exactly the capacity its producers took and its
// writer has not given back.
func TestQueueBytesMatchTheCapacityTaken(t *testing.T) {
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 1))
		var q outQueue
		sink := newRecordingSink(1 << 40)
		var taken []*batch
		id := uint64(0)
		for range 500 {
			switch op := r.IntN(10); {
			case op < 5:
				id++
				size := r.IntN(3000)
				h := wire.Header{ID: id, Verb: 1, TTL: int64(r.IntN(3)), PayloadLength: uint32(size)}
				header := wire.AppendHeader(nil, &h)
				held := int64(len(header) + size + outItemCost)
				require.True(t, sink.account.TryTake(held))
				_, err := q.push(outItem{id: id, expiresAt: h.TTL}, header, make([]byte, size), true)
				require.NoError(t, err)
			case op < 7:
				if b, _ := q.take(); b != nil {
					taken = append(taken, b)
				}
			case op < 9 && len(taken) > 0:
				i := r.IntN(len(taken))
				sink.account.Release(q.release(taken[i]))
				taken = append(taken[:i], taken[i+1:]...)
			default:
				_, removed := q.prune(func(it *outItem) bool { return it.expiresAt == 1 })
				sink.account.Release(removed)
			}
			require.Equal(t, int64(q.held()), sink.account.Used(), "seed %d", seed)
		}
		for _, b := range taken {
			sink.account.Release(q.release(b))
		}
		for b, _ := q.take(); b != nil; b, _ = q.take() {
			sink.account.Release(q.release(b))
		}
		require.Zero(t, sink.account.Used(), "seed %d: everything came back", seed)
	}
}

// TestQueueEarliestDeadlineFollowsTakes: the queue's earliest deadline
// is the earliest of the messages still queued, after a take as after a
// prune. It stayed at the deadline of a message already taken while any
// other message was queued, and the writer's coalescing wait, which ends
// at it, would have ended for a message no longer there.
func TestQueueEarliestDeadlineFollowsTakes(t *testing.T) {
	var q outQueue
	// 16 KiB messages and their headers: 31 to a segment, so messages 40
	// and 41 are in the second and message 70 in the third.
	sizes := make([]int, 80)
	for i := range sizes {
		sizes[i] = 16 << 10
	}
	queueMessages(t, &q, sizes, map[int]int64{3: 50, 40: 90, 41: 70, 70: 200}, true)
	assert.Equal(t, int64(50), q.nextExpiry())
	seg, _ := q.take()
	require.Less(t, len(seg.items), 40, "the first segment ends before message 40")
	_, _, soonest := q.observeNew(func(*outItem) {})
	assert.Equal(t, int64(70), soonest, "the earliest of the messages left")
	q.release(seg)
	q.prune(func(it *outItem) bool { return it.expiresAt == 70 })
	assert.Equal(t, int64(90), q.nextExpiry())
	for {
		seg, _ := q.take()
		if seg == nil {
			break
		}
		q.release(seg)
		if n, _ := q.pending(); n == 0 {
			assert.Zero(t, q.nextExpiry(), "none queued")
		} else {
			assert.Equal(t, int64(200), q.nextExpiry())
		}
	}
}
