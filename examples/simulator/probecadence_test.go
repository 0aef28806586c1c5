package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
)

// After the writes stop, the probes are a live small or large pair lane's
// only traffic. The probes and the samples start together, so a probe is
// sent just before each sample; on a loaded machine it has arrived by the
// sample's time in some seconds and not in others, and the sampler wakes
// a little late in some seconds. Judged with the shortest -stuck-after
// (1s, the sampling interval), such a lane must not be found stuck, and a
// wedged one must. It once was, in a run with one probe a second: one
// sample saw its probe arrive, the next did not see its own, so nothing
// had arrived for over a second with a probe written.
func TestProbedLaneInFlightAtSamplesIsNotStuck(t *testing.T) {
	start := time.Unix(0, 0)
	// In odd seconds the sampler wakes 3 ms late and the probes take
	// 10 ms to arrive; in even seconds 1 ms and 0.2 ms.
	odd := func(at time.Duration) bool { return (at/sampleInterval)%2 == 1 }
	sampleAt := func(k int) time.Duration {
		at := time.Duration(k) * sampleInterval
		if odd(at) {
			return at + 3*time.Millisecond
		}
		return at + time.Millisecond
	}
	latency := func(sent time.Duration) time.Duration {
		if odd(sent) {
			return 10 * time.Millisecond
		}
		return 200 * time.Microsecond
	}
	live := pairLane{From: "n2", To: "n1", Lane: routing.Small}
	wedged := pairLane{From: "n1", To: "n2", Lane: routing.Small}
	d := newStuckDetector(sampleInterval)
	for k := range 20 {
		now := sampleAt(k)
		var written, arrived uint64
		for sent := 500 * time.Microsecond; sent <= now; sent += probeInterval {
			written++
			if sent+latency(sent) <= now {
				arrived++
			}
		}
		d.observe(start.Add(now), []pairSample{
			{pairLane: live, Written: written, Moved: arrived},
			{pairLane: wedged, Written: written},
		})
	}
	r := d.report(start, startGrace)
	require.Len(t, r.Pairs, 1, "only the wedged pair lane is stuck: %+v", r.Pairs)
	require.Equal(t, "n1->n2 small", r.Pairs[0].name())
}
