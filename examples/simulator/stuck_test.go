package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// The detector on one pair lane, sampled once a second for a run of
// seconds+1 samples with an 8 s bound: the sample at second t is
// sample(t). Times are given, never waited for.
func TestStuckDetector(t *testing.T) {
	const bound = 8 * time.Second
	n := func(v int) uint64 { return uint64(v) }
	for _, tc := range []struct {
		name    string
		seconds int
		sample  func(t int) pairSample
		want    []stuckPair // From, To, Lane filled in below
	}{
		{name: "moves: messages pending, and arriving every second", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Pending: true, Written: n(10 * t), Moved: n(10 * t)} }},
		{name: "idle: nothing pending, nothing written", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Written: 5, Moved: 5} }},
		{name: "pending from 5 s, nothing arrives for longer than the bound", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Pending: t >= 5, Moved: n(min(t, 5))} },
			want:   []stuckPair{{Why: []string{"messages_waiting"}, SinceS: 5, LongestS: 25, Stalls: 1, OngoingS: 25}}},
		{name: "written from 5 s, never arrives: the receiver stopped reading", seconds: 20,
			sample: func(t int) pairSample { return pairSample{Written: n(t), Moved: n(min(t, 5))} },
			want:   []stuckPair{{Why: []string{"messages_waiting"}, SinceS: 5, LongestS: 15, Stalls: 1, OngoingS: 15}}},
		{name: "arriving every 9 s: stalls of the bound exactly are not stuck", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Pending: true, Moved: n(t / 9)} }},
		{name: "destination down: pending, nothing arrives, excused", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Excused: true, Pending: true, Failed: n(t)} }},
		{name: "5 s without arrivals, down 6 s, 7 s without arrivals: the clock restarts when it is back", seconds: 30,
			sample: func(t int) pairSample {
				return pairSample{Excused: t >= 10 && t < 16, Pending: true, Moved: n(min(t, 4) + max(t-22, 0))}
			}},
		{name: "recovers within the bound: a 7 s stall (the disk stalls)", seconds: 30,
			sample: func(t int) pairSample {
				moved := t
				if t >= 10 && t < 17 {
					moved = 10
				}
				return pairSample{Pending: true, Moved: n(moved)}
			}},
		{name: "recovers after the bound: stuck, then moving by the end", seconds: 30,
			sample: func(t int) pairSample {
				moved := t
				if t >= 10 && t < 20 {
					moved = 10
				}
				return pairSample{Pending: true, Moved: n(moved)}
			},
			want: []stuckPair{{Why: []string{"messages_waiting"}, SinceS: 10, LongestS: 9, Stalls: 1}}},
		{name: "stuck twice", seconds: 40,
			sample: func(t int) pairSample {
				moved := t
				switch {
				case t < 10:
				case t < 20:
					moved = 10
				case t < 25:
					moved = t - 10
				default:
					moved = 15
				}
				return pairSample{Pending: true, Moved: n(moved)}
			},
			want: []stuckPair{{Why: []string{"messages_waiting"}, SinceS: 10, LongestS: 15, Stalls: 2, OngoingS: 15}}},
		{name: "every request fails for longer than the bound, destination up", seconds: 20,
			sample: func(t int) pairSample { return pairSample{Acked: 3, Failed: n(t)} },
			want:   []stuckPair{{Why: []string{"requests_failing"}, SinceS: 1, LongestS: 19, Stalls: 1, OngoingS: 19}}},
		{name: "requests failing, some acknowledged", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Acked: n(t / 4), Failed: n(t)} }},
		{name: "one request failed, then none was made", seconds: 30,
			sample: func(t int) pairSample { return pairSample{Failed: n(min(t, 1))} }},
		{name: "both: nothing arrives, and the requests that carry it fail", seconds: 20,
			sample: func(t int) pairSample { return pairSample{Pending: true, Failed: n(t)} },
			want:   []stuckPair{{Why: []string{"messages_waiting", "requests_failing"}, SinceS: 0, LongestS: 20, Stalls: 1, OngoingS: 20}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			pl := pairLane{From: "n1", To: "n2", Lane: routing.Large}
			d := newStuckDetector(bound)
			for s := 0; s <= tc.seconds; s++ {
				sample := tc.sample(s)
				sample.pairLane = pl
				d.observe(start.Add(time.Duration(s)*time.Second), []pairSample{sample})
			}
			r := d.report(start, startGrace)
			for i := range tc.want {
				tc.want[i].From, tc.want[i].To, tc.want[i].Lane = "n1", "n2", "large"
			}
			if tc.want == nil {
				tc.want = []stuckPair{}
			}
			require.Equal(t, tc.want, r.Pairs)
			require.Equal(t, 8.0, r.AfterS)
		})
	}
}

// What observe returns each second is the pair lanes stuck then, and the
// longest stall among them.
func TestStuckDetectorNow(t *testing.T) {
	start := time.Unix(0, 0)
	d := newStuckDetector(5 * time.Second)
	moving := pairLane{From: "n1", To: "n2", Lane: routing.Small}
	wedged := pairLane{From: "n2", To: "n1", Lane: routing.Large}
	var stuck []int
	var worst time.Duration
	for s := range 10 {
		now := start.Add(time.Duration(s) * time.Second)
		var count int
		count, worst = d.observe(now, []pairSample{
			{pairLane: moving, Pending: true, Moved: uint64(s)},
			{pairLane: wedged, Pending: true},
		})
		stuck = append(stuck, count)
	}
	require.Equal(t, []int{0, 0, 0, 0, 0, 0, 1, 1, 1, 1}, stuck, "stuck once its stall exceeds 5 s")
	require.Equal(t, 9*time.Second, worst)

	// A pair lane no longer sampled (its node left) is not stuck any more.
	count, worst := d.observe(start.Add(10*time.Second), []pairSample{{pairLane: moving, Pending: true, Moved: 10}})
	require.Zero(t, count)
	require.Zero(t, worst)
	r := d.report(start, startGrace)
	require.Equal(t, 2, r.Watched)
	require.Len(t, r.Pairs, 1)
	require.Zero(t, r.Pairs[0].OngoingS)
	require.Zero(t, r.WorstOngoingS)
}

func conn(peer cluster.NodeID, lane routing.Lane, c transport.ConnStats) transport.ConnStats {
	c.Peer, c.Lane = peer, lane
	return c
}

// Cluster mode: the sender's side from its Stats, the receiver's from
// its own, over every incarnation.
func TestClusterPairSamples(t *testing.T) {
	now := time.Unix(100, 0)
	var dropped [transport.NumReasons]uint64
	dropped[transport.ReasonExpired] = 2
	n1 := nodeState{id: "n1", up: true, upSince: now.Add(-time.Minute),
		stats: []transport.Stats{
			{Conns: []transport.ConnStats{ // a past incarnation: its pending does not count
				conn("n2", routing.Large, transport.ConnStats{MessagesSent: 4, PendingBytes: 1 << 20}),
				conn("n2", routing.Small, transport.ConnStats{MessagesReceived: 7}),
			}},
			{Conns: []transport.ConnStats{
				conn("n2", routing.Large, transport.ConnStats{MessagesSent: 3, PendingBytes: 512 << 10}),
				conn("n2", routing.Small, transport.ConnStats{MessagesSent: 9, MessagesReceived: 1, DroppedInbound: dropped}),
			}},
		},
		requests: map[peerLane]requestOutcomes{{"n2", routing.Large}: {acked: 1, failed: 5}}}
	n2 := nodeState{id: "n2", up: true, upSince: now.Add(-time.Minute),
		stats: []transport.Stats{{Conns: []transport.ConnStats{
			conn("n1", routing.Large, transport.ConnStats{MessagesReceived: 6, RemoteDropped: dropped}),
			conn("n1", routing.Small, transport.ConnStats{MessagesSent: 10, PendingMessages: 1}),
		}}}}
	n3 := nodeState{id: "n3"} // down

	samples := clusterPairSamples([]nodeState{n1, n2, n3}, now, startGrace)
	require.Len(t, samples, 3*2*3, "every ordered pair, every lane")
	by := map[pairLane]pairSample{}
	for _, s := range samples {
		by[s.pairLane] = s
	}
	require.Equal(t, pairSample{pairLane: pairLane{"n1", "n2", routing.Large}, Pending: true, Written: 7, Moved: 8,
		Acked: 1, Failed: 5}, by[pairLane{"n1", "n2", routing.Large}])
	require.Equal(t, pairSample{pairLane: pairLane{"n2", "n1", routing.Small}, Pending: true, Written: 10, Moved: 10},
		by[pairLane{"n2", "n1", routing.Small}], "arrivals: received and dropped on arrival, over incarnations")
	require.Equal(t, pairSample{pairLane: pairLane{"n2", "n1", routing.Urgent}}, by[pairLane{"n2", "n1", routing.Urgent}])
	for _, s := range samples {
		involvesN3 := s.From == "n3" || s.To == "n3"
		require.Equal(t, involvesN3, s.Excused, "%v: a pair with a node down is excused", s.pairLane)
	}

	// A node restarted less than the grace ago excuses its pairs.
	n2.upSince = now.Add(-startGrace + time.Millisecond)
	for _, s := range clusterPairSamples([]nodeState{n1, n2}, now, startGrace) {
		require.True(t, s.Excused, "%v", s.pairLane)
	}
}

// Node mode: only the node's own side, so its writes are what gets
// through.
func TestNodePairSamples(t *testing.T) {
	now := time.Unix(100, 0)
	self := nodeState{id: "n1", up: true, upSince: now.Add(-time.Minute),
		stats: []transport.Stats{{Conns: []transport.ConnStats{
			conn("n2", routing.Large, transport.ConnStats{MessagesSent: 3, PendingMessages: 2, MessagesReceived: 50}),
			conn("n3", routing.Small, transport.ConnStats{MessagesSent: 8}),
		}}},
		requests: map[peerLane]requestOutcomes{{"n4", routing.Small}: {failed: 2}}}
	alive := aliveSince{}
	alive.update(now.Add(-time.Minute), []cluster.NodeID{"n1", "n2", "n4"})
	alive.update(now.Add(-time.Second), []cluster.NodeID{"n1", "n2", "n4", "n3"})

	samples := nodePairSamples(self, alive, now, startGrace)
	require.Len(t, samples, 3*3, "the peers it has counters or requests for, every lane")
	by := map[pairLane]pairSample{}
	for _, s := range samples {
		by[s.pairLane] = s
	}
	require.Equal(t, pairSample{pairLane: pairLane{"n1", "n2", routing.Large}, Pending: true, Moved: 3},
		by[pairLane{"n1", "n2", routing.Large}], "no Written: what the peer received is not known here")
	require.True(t, by[pairLane{"n1", "n3", routing.Small}].Excused, "n3 joined a second ago")
	require.Equal(t, pairSample{pairLane: pairLane{"n1", "n4", routing.Small}, Failed: 2}, by[pairLane{"n1", "n4", routing.Small}])

	// Later, n2 and n4 are gone and n3 has been up for longer than the
	// grace.
	later := now.Add(startGrace)
	alive.update(later, []cluster.NodeID{"n1", "n3"})
	for _, s := range nodePairSamples(self, alive, later, startGrace) {
		require.Equal(t, s.To != "n3", s.Excused, "%v", s.pairLane)
	}
}

func TestVerdict(t *testing.T) {
	start := time.Unix(0, 0)
	d := newStuckDetector(8 * time.Second)
	wedged := pairLane{From: "n1", To: "n3", Lane: routing.Large}
	for s := range 31 {
		d.observe(start.Add(time.Duration(s)*time.Second), []pairSample{{pairLane: wedged, Pending: true}})
	}
	r := &report{Stuck: d.report(start, startGrace)}
	accountNodes(r, nil, true)
	require.Equal(t, "summary: nodes=0 writes=0 writes_failed=0 sent=0 delivered=0 failed=0 lost=0 stuck=1", r.SummaryLine)

	var stderr bytes.Buffer
	require.Equal(t, 1, verdict(r, &stderr))
	require.Equal(t, "simulator: 1 pair lanes stuck for over 8.0 s: n1->n3 large (30 s)\n", stderr.String())

	var text bytes.Buffer
	r.writeText(&text, false)
	require.Contains(t, text.String(), "stuck: 1 of 1 pair lanes went over 8.0 s")
	require.Contains(t, text.String(), "n1->n3 large")
	require.Contains(t, text.String(), "still stuck at the end, for 30.0 s")
	require.True(t, strings.HasSuffix(text.String(), r.SummaryLine+"\n"))

	r.Summary.Lost = 2
	stderr.Reset()
	require.Equal(t, 1, verdict(r, &stderr))
	require.Contains(t, stderr.String(), "2 messages have no outcome")

	clean := &report{Stuck: newStuckDetector(8*time.Second).report(start, startGrace)}
	accountNodes(clean, nil, true)
	stderr.Reset()
	require.Equal(t, 0, verdict(clean, &stderr))
	require.Empty(t, stderr.String())
}
