package sockstat_test

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
)

// slowWrite is what these tests call a write that waited for room.
const slowWrite = time.Millisecond

// TestSampledSendPeakMatchesExact writes to a loopback socket whose peer
// stops reading, measuring the send queue after every write (the exact
// peak, as the transport did) and only where a Sampler says (the sampled
// peak), from the same readings. In each phase the peer reads nothing
// while the writer writes; then it drains everything. The sampled peak of
// each phase must be the exact one.
func TestSampledSendPeakMatchesExact(t *testing.T) {
	client, server := tcpPair(t)
	require.NoError(t, sockstat.SetBuffers(server, 0, 64<<10))
	require.NoError(t, sockstat.SetBuffers(client, 1<<20, 0))
	probe := newProbe(t, client)
	var sampler sockstat.Sampler
	buf := make([]byte, 256<<10)

	phases := []struct {
		name        string
		size, count int
	}{
		{"many small messages", 128, 3000},
		{"a few writes of 100 KiB", 100 << 10, 3},
		{"frames of 4 KiB", 4 << 10, 100},
		{"batches of 20 KiB", 20 << 10, 20},
	}
	measured, writes := 0, 0
	for _, ph := range phases {
		var exact, sampled sockstat.Peak
		for range ph.count {
			start := time.Now()
			_, err := client.Write(buf[:ph.size])
			require.NoError(t, err)
			slow := time.Since(start) >= slowWrite
			v := queue(t, probe.SendQueue)
			exact.Observe(int64(v))
			writes++
			if sampler.Due(ph.size, slow) {
				measured++
				sampled.Observe(int64(v))
				sampler.Record(v, ph.size)
			}
		}
		require.Positive(t, exact.Max(), "%s: the peer's window closed and the queue built up", ph.name)
		require.Equal(t, exact.Max(), sampled.Max(), "%s: sampled peak", ph.name)
		// The peer drains everything; the queue empties.
		_, err := io.ReadFull(server, make([]byte, ph.size*ph.count))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return queue(t, probe.SendQueue) == 0 }, 10*time.Second, time.Millisecond)
	}
	t.Logf("peer stopped: measured %d of %d writes", measured, writes)

	// The peer keeps up, as on a connection with sparse traffic: the queue
	// stays (nearly) empty and few writes are measured.
	measured, writes = 0, 0
	var exact, sampled sockstat.Peak
	reply := make([]byte, 128)
	for range 1000 {
		_, err := client.Write(buf[:128])
		require.NoError(t, err)
		_, err = io.ReadFull(server, reply)
		require.NoError(t, err)
		v := queue(t, probe.SendQueue)
		exact.Observe(int64(v))
		writes++
		if sampler.Due(128, false) {
			measured++
			sampled.Observe(int64(v))
			sampler.Record(v, 128)
		}
	}
	t.Logf("peer keeps up: measured %d of %d writes; peaks exact %d, sampled %d", measured, writes, exact.Max(), sampled.Max())
	require.Less(t, measured, writes/4, "a quiet socket is sampled")
	require.GreaterOrEqual(t, sampled.Max(), exact.Max()-sockstat.DefaultSampleBytes, "the bound on a miss")
}
