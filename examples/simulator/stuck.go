package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// A pair lane is stuck when work is waiting on it and nothing gets
// through for longer than a bound (-stuck-after). Nothing is lost then,
// so lost=0 does not show it; the detector below does. See main.go's doc
// comment for the rule as users read it.

// pairLane is one lane in one direction between two nodes.
type pairLane struct {
	From, To cluster.NodeID
	Lane     routing.Lane
}

// pairSample is what one sample says of a pair lane. The counters are
// cumulative over the run; only their growth matters.
type pairSample struct {
	pairLane
	// Excused: a node of the pair is down, or (re)started less than the
	// grace ago. The pair is not judged, and its clock starts again.
	Excused bool
	// Pending: the sender holds messages for the peer on the lane now
	// (queued, or taken by its writer and not yet written).
	Pending bool
	// Written counts the messages the sender wrote on the lane: they are
	// waiting too until Moved grows. Zero when the receiver's side is not
	// known (node mode), so that only Pending says what waits.
	Written uint64
	// Moved counts what got through: in cluster mode the messages that
	// arrived at the receiver, in node mode those the sender wrote.
	Moved uint64
	// Acked and Failed count the sender's replica requests to the peer
	// that went on this lane.
	Acked, Failed uint64
}

// Why a pair lane was stuck.
const (
	stuckWaiting  = 1 << iota // messages waiting, none got through
	stuckRequests             // every request failed
)

// stuckDetector judges pair lanes from samples. It is pure policy: the
// caller samples the transports and passes the time. It is not safe for
// concurrent use: the progress loop owns it while the run lasts.
type stuckDetector struct {
	bound   time.Duration
	clocks  map[pairLane]*pairClock
	records map[pairLane]*stuckRecord
	watched map[pairLane]bool // every pair lane ever judged
	// undecided counts, at the last sample, the pair lanes not judged
	// (excused, or seen for the first time) and those with messages
	// waiting for no longer than the bound: a later sample may yet find
	// them stuck.
	undecided int
}

// pairClock follows one pair lane between samples.
type pairClock struct {
	// quietSince is when the pair last moved or last had nothing
	// waiting; moved and written are its counters then.
	quietSince     time.Time
	moved, written uint64
	// failingSince is when a request was first seen failing since the
	// last one acknowledged, zero when none has; lastFailure the latest.
	failingSince, lastFailure time.Time
	acked, failed             uint64
	stalled                   bool // stalled beyond the bound at the last sample
}

// stuckRecord is what the report says of a pair lane once stuck.
type stuckRecord struct {
	firstSince time.Time     // when its first stall beyond the bound began
	longest    time.Duration // its longest stall
	stalls     int           // stalls beyond the bound
	why        int           // stuckWaiting | stuckRequests, over the run
	ongoing    time.Duration // the stall at the last sample, if beyond the bound
}

func newStuckDetector(bound time.Duration) *stuckDetector {
	return &stuckDetector{bound: bound, clocks: map[pairLane]*pairClock{},
		records: map[pairLane]*stuckRecord{}, watched: map[pairLane]bool{}}
}

// observe judges the pair lanes of one sample taken at now. A pair lane
// missing from samples is no longer judged (its node left), as if
// excused. It returns how many are stuck now and the longest of their
// stalls.
func (d *stuckDetector) observe(now time.Time, samples []pairSample) (stuckNow int, worst time.Duration) {
	seen := make(map[pairLane]bool, len(samples))
	d.undecided = 0
	for _, s := range samples {
		seen[s.pairLane] = true
		c := d.clocks[s.pairLane]
		if c == nil || s.Excused {
			d.undecided++
			d.calm(s.pairLane)
			d.clocks[s.pairLane] = &pairClock{quietSince: now, moved: s.Moved, written: s.Written,
				acked: s.Acked, failed: s.Failed}
			continue
		}
		d.watched[s.pairLane] = true
		waiting, failing := c.waitingFor(now, s), c.failingFor(now, s, d.bound)
		stall, why := max(waiting, failing), 0
		if waiting > d.bound {
			why |= stuckWaiting
		}
		if failing > d.bound {
			why |= stuckRequests
		}
		if why == 0 {
			if waiting > 0 {
				d.undecided++
			}
			d.calm(s.pairLane)
			continue
		}
		r := d.records[s.pairLane]
		if r == nil {
			r = &stuckRecord{firstSince: now.Add(-stall)}
			d.records[s.pairLane] = r
		}
		if !c.stalled {
			c.stalled = true
			r.stalls++
		}
		r.why |= why
		r.longest = max(r.longest, stall)
		r.ongoing = stall
		stuckNow++
		worst = max(worst, stall)
	}
	for p := range d.clocks {
		if !seen[p] {
			d.calm(p)
			delete(d.clocks, p)
		}
	}
	return stuckNow, worst
}

// skipRequests takes the pair lanes' request counts from samples without
// judging them: the requests that ended in a stretch not sampled (the
// drain, on a loaded machine tens of seconds) would otherwise read as one
// stall of every request failing, from the sample before to the next.
func (d *stuckDetector) skipRequests(samples []pairSample) {
	for _, s := range samples {
		if c := d.clocks[s.pairLane]; c != nil {
			c.failingSince, c.acked, c.failed = time.Time{}, s.Acked, s.Failed
		}
	}
}

// calm ends a pair lane's stall, if any.
func (d *stuckDetector) calm(p pairLane) {
	if c := d.clocks[p]; c != nil {
		c.stalled = false
	}
	if r := d.records[p]; r != nil {
		r.ongoing = 0
	}
}

// waitingFor returns how long messages have been waiting on the pair
// lane with none getting through: 0 if some got through since the last
// sample, or none were waiting.
func (c *pairClock) waitingFor(now time.Time, s pairSample) time.Duration {
	waiting := s.Pending || s.Written != c.written
	if s.Moved != c.moved || !waiting {
		c.quietSince, c.moved, c.written = now, s.Moved, s.Written
		return 0
	}
	return now.Sub(c.quietSince)
}

// failingFor returns how long every request on the pair lane has been
// failing: from the first failure seen since the last acknowledgement to
// the latest. One failure, or failures followed by no request for the
// bound, do not make a stall.
func (c *pairClock) failingFor(now time.Time, s pairSample, bound time.Duration) time.Duration {
	switch {
	case s.Acked != c.acked:
		c.failingSince = time.Time{}
	case s.Failed != c.failed:
		if c.failingSince.IsZero() {
			c.failingSince = now
		}
		c.lastFailure = now
	case !c.failingSince.IsZero() && now.Sub(c.lastFailure) > bound:
		c.failingSince = time.Time{} // no request lately: nothing to judge
	}
	c.acked, c.failed = s.Acked, s.Failed
	if c.failingSince.IsZero() {
		return 0
	}
	return c.lastFailure.Sub(c.failingSince)
}

// stuckReport is what the report says of stuck pair lanes.
type stuckReport struct {
	// AfterS is the bound (-stuck-after) and GraceS the time after a node
	// (re)starts during which its pairs are not judged, in seconds.
	AfterS float64 `json:"after_s"`
	GraceS float64 `json:"grace_s"`
	// Watched is how many pair lanes were judged at least once.
	Watched int `json:"pair_lanes_watched"`
	// Pairs are the pair lanes stuck at any time, by sender, receiver and
	// lane.
	Pairs []stuckPair `json:"pairs"`
	// WorstOngoingS is the longest stall still going on at the last
	// sample among the pairs stuck then; 0 if none was.
	WorstOngoingS float64 `json:"worst_ongoing_s"`
	// MovingAtEnd counts the pair lanes whose receiver counted a message
	// from the sender after the writes stopped, while the gossip and the
	// probes went on, and StillAtEnd names the others (cluster mode; nil
	// in node mode): every pair lane must move after the faults.
	MovingAtEnd *int     `json:"pair_lanes_moving_at_end,omitempty"`
	StillAtEnd  []string `json:"pair_lanes_still_at_end,omitempty"`
}

// atEnd records which pair lanes moved after the writes stopped: all of
// them but still.
func (r *stuckReport) atEnd(still []pairLane, all int) {
	moving := all - len(still)
	r.MovingAtEnd, r.StillAtEnd = &moving, []string{}
	slices.SortFunc(still, func(a, b pairLane) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Lane, b.Lane))
	})
	for _, p := range still {
		r.StillAtEnd = append(r.StillAtEnd, stuckPair{From: string(p.From), To: string(p.To), Lane: p.Lane.String()}.name())
	}
}

// stuckPair is one pair lane that was stuck.
type stuckPair struct {
	From string `json:"from"`
	To   string `json:"to"`
	Lane string `json:"lane"`
	// Why: "messages_waiting" (messages waiting, none got through),
	// "requests_failing" (every request failed), or both.
	Why []string `json:"why"`
	// SinceS is when its first stall beyond the bound began, in seconds
	// since the start; LongestS its longest stall; Stalls how many went
	// beyond the bound.
	SinceS   float64 `json:"since_s"`
	LongestS float64 `json:"longest_s"`
	Stalls   int     `json:"stalls"`
	// OngoingS is the stall still going on at the last sample, 0 if the
	// pair lane was no longer stuck then.
	OngoingS float64 `json:"ongoing_s"`
}

func (p stuckPair) name() string { return fmt.Sprintf("%s->%s %s", p.From, p.To, p.Lane) }

// report returns what the detector found; start is the run's start.
func (d *stuckDetector) report(start time.Time, grace time.Duration) *stuckReport {
	r := &stuckReport{AfterS: d.bound.Seconds(), GraceS: grace.Seconds(), Watched: len(d.watched), Pairs: []stuckPair{}}
	for p, rec := range d.records {
		sp := stuckPair{From: string(p.From), To: string(p.To), Lane: p.Lane.String(),
			SinceS: rec.firstSince.Sub(start).Seconds(), LongestS: rec.longest.Seconds(), Stalls: rec.stalls,
			OngoingS: rec.ongoing.Seconds()}
		if rec.why&stuckWaiting != 0 {
			sp.Why = append(sp.Why, "messages_waiting")
		}
		if rec.why&stuckRequests != 0 {
			sp.Why = append(sp.Why, "requests_failing")
		}
		r.Pairs = append(r.Pairs, sp)
		r.WorstOngoingS = max(r.WorstOngoingS, sp.OngoingS)
	}
	slices.SortFunc(r.Pairs, func(a, b stuckPair) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), laneOrder(a.Lane)-laneOrder(b.Lane))
	})
	return r
}

func laneOrder(name string) int {
	lane, _ := routing.ParseLane(name)
	return int(lane)
}

// names lists the stuck pair lanes for a message: "n1->n2 large (95 s)".
func (r *stuckReport) names() string {
	var parts []string
	for _, p := range r.Pairs {
		parts = append(parts, fmt.Sprintf("%s (%.0f s)", p.name(), p.LongestS))
	}
	return strings.Join(parts, ", ")
}

// writeText prints the stuck pair lanes for people; nothing if r is nil.
func (r *stuckReport) writeText(w io.Writer) {
	if r == nil {
		return
	}
	if r.MovingAtEnd != nil {
		fmt.Fprintf(w, "moving: %d of %d pair lanes moved after the writes stopped (gossip and probes)", *r.MovingAtEnd, *r.MovingAtEnd+len(r.StillAtEnd))
		if len(r.StillAtEnd) > 0 {
			fmt.Fprintf(w, "; not: %s", strings.Join(r.StillAtEnd, ", "))
		}
		fmt.Fprintln(w)
	}
	if len(r.Pairs) == 0 {
		fmt.Fprintf(w, "stuck: none of %d pair lanes went %s with messages waiting and none getting through, or every request failing\n",
			r.Watched, seconds(r.AfterS))
		return
	}
	fmt.Fprintf(w, "stuck: %d of %d pair lanes went over %s with messages waiting and none getting through, or every request failing:\n",
		len(r.Pairs), r.Watched, seconds(r.AfterS))
	for _, p := range r.Pairs {
		end := "moving again by the end"
		if p.OngoingS > 0 {
			end = fmt.Sprintf("still stuck at the end, for %s", seconds(p.OngoingS))
		}
		fmt.Fprintf(w, "  %-16s %-33s from %.1f s, longest %s, %d stall(s); %s\n",
			p.name(), strings.ReplaceAll(strings.Join(p.Why, ", "), "_", " "), p.SinceS, seconds(p.LongestS), p.Stalls, end)
	}
}

func seconds(s float64) string { return fmt.Sprintf("%.1f s", s) }
