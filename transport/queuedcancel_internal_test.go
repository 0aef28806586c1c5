package transport

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// TestQueueWithdrawCutsTheRequest: a queued request withdrawn leaves the
// queue whole — its item, its bytes (the messages behind it moved up,
// intact), the capacity it held, its deadline and its place among the
// messages the strategy has seen — and a segment it empties leaves the
// queue; a request not queued, or a message that is not a request, is
// left alone.
func TestQueueWithdrawCutsTheRequest(t *testing.T) {
	var q outQueue
	sizes := make([]int, 40) // 16 KiB each: several segments
	expires := map[int]int64{}
	for i := range sizes {
		sizes[i] = 16<<10 + i
		expires[i] = int64(1000 + i)
	}
	expires[4] = 10 // the soonest deadline, a request's (i%3 == 1)
	queueMessages(t, &q, sizes, expires, true)
	segments := len(q.segments)
	require.Greater(t, segments, 1)
	q.observeNew(func(*outItem) {})
	require.Equal(t, int64(10), q.nextExpiry())

	_, _, ok := q.withdraw(3) // i == 2: a response
	assert.False(t, ok, "not a request")
	_, _, ok = q.withdraw(999)
	assert.False(t, ok, "not queued")

	heldBefore, messagesBefore := q.held(), q.messages
	gone := map[uint64]bool{}
	var givenBack int64
	for _, id := range []uint64{5, 2, 32, 38} { // the soonest; the first request; in later segments
		want := heldBy(&q, id)
		m, held, ok := q.withdraw(id)
		require.True(t, ok, "request %d", id)
		assert.Equal(t, id, m.id)
		assert.True(t, m.isRequest)
		assert.Equal(t, want, held)
		givenBack += held
		gone[id] = true
	}
	assert.Equal(t, int64(heldBefore)-givenBack, int64(q.held()), "the capacity they held is out of the queue")
	assert.Equal(t, messagesBefore-4, q.messages)
	assert.Equal(t, messagesBefore-4, q.observed, "they were seen: the count of those seen goes down with them")
	assert.Equal(t, int64(1000), q.nextExpiry(), "the soonest deadline left (message 1's)")
	_, _, ok = q.withdraw(5)
	assert.False(t, ok, "withdrawn once")

	var left []uint64
	for {
		b, _ := q.take()
		if b == nil {
			break
		}
		end := int32(0)
		for i := range b.items {
			it := &b.items[i]
			left = append(left, it.id)
			assert.GreaterOrEqual(t, it.start, end, "in order in the buffer")
			end = it.end
			p := it.payloadIn(b.buf.B)
			require.Len(t, p, sizes[it.id-1], "message %d", it.id)
			for _, c := range p {
				if c != byte(it.id-1) {
					t.Fatalf("message %d: its payload was overwritten", it.id)
				}
			}
		}
		q.release(b)
	}
	for id := uint64(1); id <= uint64(len(sizes)); id++ {
		if !gone[id] {
			require.NotEmpty(t, left)
			assert.Equal(t, id, left[0])
			left = left[1:]
		}
	}
	assert.Empty(t, left)
	assert.Zero(t, q.held())

	// The only message of a segment withdrawn: the segment leaves too.
	queueMessages(t, &q, []int{300 << 10, 300 << 10, 300 << 10}, nil, true) // a segment each; request id 2
	require.Len(t, q.segments, 3)
	_, _, ok = q.withdraw(2)
	require.True(t, ok)
	assert.Len(t, q.segments, 2, "the emptied segment left the queue")
	for _, want := range []uint64{1, 3} {
		b, _ := q.take()
		require.Len(t, b.items, 1)
		assert.Equal(t, want, b.items[0].id)
		q.release(b)
	}
	assert.Zero(t, q.held())
}

// TestQueueWithdrawInTurn: requests withdrawn oldest first, as requests
// that time out in turn are, leave their bytes in the buffer until they
// outnumber the rest's (then the rest move to its start), so the buffer
// holds at most about twice what is queued; the earliest deadline is
// worked out again when read, and what is left is intact.
func TestQueueWithdrawInTurn(t *testing.T) {
	var q outQueue
	const n, size = 100, 1 << 10
	for i := range n {
		id := uint64(i + 1)
		h := wire.Header{ID: id, Verb: 7, TTL: int64(time.Second), PayloadLength: size}
		it := outItem{id: id, verb: 7, expiresAt: int64(1000 + i), isRequest: true}
		_, err := q.push(it, wire.AppendHeader(nil, &h), bytes.Repeat([]byte{byte(i)}, size), true)
		require.NoError(t, err)
	}
	require.Len(t, q.segments, 1)
	seg := q.segments[0]
	for i := range 70 {
		_, _, ok := q.withdraw(uint64(i + 1))
		require.True(t, ok, "request %d", i+1)
		assert.Equal(t, int64(1000+i+1), q.nextExpiry(), "after withdrawing %d", i+1)
		assert.LessOrEqual(t, len(seg.buf.B), 2*q.queued+size+64, "the buffer after withdrawing %d", i+1)
	}
	assert.Equal(t, n-70, q.messages)
	b, _ := q.take()
	require.Len(t, b.items, n-70)
	for i := range b.items {
		it := &b.items[i]
		assert.Equal(t, uint64(70+i+1), it.id)
		p := it.payloadIn(b.buf.B)
		require.Len(t, p, size)
		for _, c := range p {
			if c != byte(it.id-1) {
				t.Fatalf("message %d: its payload was overwritten", it.id)
			}
		}
	}
	q.release(b)
	assert.Zero(t, q.held())
}

// TestQueueWithdrawalsLeaveNoFullArrays: behind a peer that stopped
// reading, every request of a full lane withdrawn but the last of each
// segment (short deadlines, and one long-lived message each): the
// segments kept their whole buffers and item arrays, 2.7 MB here for a
// message each that no capacity counted beyond a few hundred bytes,
// and producers could fill the capacity given back with more such
// segments. They now shrink to what is left.
func TestQueueWithdrawalsLeaveNoFullArrays(t *testing.T) {
	var q outQueue
	const payload = 64
	header := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 7, TTL: int64(time.Second), PayloadLength: payload})
	body := make([]byte, payload)
	n := (4 << 20) / (len(header) + payload + outItemCost)
	for i := range n {
		id := uint64(i + 1)
		_, err := q.push(outItem{id: id, verb: 7, expiresAt: int64(id), isRequest: true}, header, body, true)
		require.NoError(t, err)
	}
	var keep []uint64
	for _, seg := range q.segments {
		keep = append(keep, seg.items[len(seg.items)-1].id)
	}
	require.Greater(t, len(keep), 4)
	kept := map[uint64]bool{}
	for _, id := range keep {
		kept[id] = true
	}
	for id := uint64(1); id <= uint64(n); id++ {
		if !kept[id] {
			_, _, ok := q.withdraw(id)
			require.True(t, ok, "request %d", id)
		}
	}
	require.Equal(t, len(keep), q.messages)
	arrays := 0
	for _, seg := range q.segments {
		arrays += cap(seg.buf.B) + cap(seg.items)*outItemCost
	}
	assert.Less(t, arrays, len(keep)*(2*shrinkSlack), "bytes of arrays kept for %d messages", len(keep))
	for _, want := range keep {
		b, _ := q.take()
		require.NotNil(t, b)
		require.Len(t, b.items, 1)
		assert.Equal(t, want, b.items[0].id)
		assert.Len(t, b.items[0].payloadIn(b.buf.B), payload)
		q.release(b)
	}
	assert.Zero(t, q.held())
}

// heldBy returns the capacity queued message id holds.
func heldBy(q *outQueue, id uint64) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, seg := range q.segments {
		for i := range seg.items {
			if seg.items[i].id == id {
				return int64(seg.items[i].held())
			}
		}
	}
	return 0
}

// BenchmarkWithdrawInTurn: a lane whose peer stopped reading, its queue
// full of small requests (4 MiB of 64-byte payloads, some 40 000), which
// time out in the order they were queued, each withdrawn by its caller:
// the cost of one withdrawal.
func BenchmarkWithdrawInTurn(b *testing.B) {
	const payload, queued = 64, 4 << 20
	header := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 7, TTL: int64(time.Second), PayloadLength: payload})
	body := make([]byte, payload)
	n := queued / (len(header) + payload + outItemCost)
	var q outQueue
	id := uint64(0)
	push := func() {
		id++
		it := outItem{id: id, verb: 7, expiresAt: int64(id), isRequest: true}
		if _, err := q.push(it, header, body, true); err != nil {
			b.Fatal(err)
		}
	}
	for range n {
		push()
	}
	b.ResetTimer()
	for i := range b.N {
		if _, _, ok := q.withdraw(id - uint64(n) + 1); !ok {
			b.Fatalf("withdrawal %d: request %d not queued", i, id-uint64(n)+1)
		}
		push() // the capacity given back taken again: the queue stays full
	}
}
