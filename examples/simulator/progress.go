package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// sample is the cluster over one interval of the progress display (about
// a second); the report keeps them all for its charts.
type sample struct {
	T float64 `json:"t_s"` // end of the interval, seconds since the start
	// MsgsPerSec counts messages written to sockets, by lane (requests,
	// responses and gossip).
	MsgsPerSec [routing.NumLanes]float64 `json:"msgs_per_s"`
	// P50 and P99 are latencies recorded in the interval, by lane (see
	// ledger.latency); 0 when there were none.
	P50 [routing.NumLanes]float64 `json:"p50_ms"`
	P99 [routing.NumLanes]float64 `json:"p99_ms"`
	// MsgsPerWrite is messages per socket write in the interval: what
	// coalescing achieved.
	MsgsPerWrite [routing.NumLanes]float64 `json:"msgs_per_write"`
	WritesPerSec float64                   `json:"writes_per_s"` // database writes acknowledged by a quorum
	WriteP99     float64                   `json:"write_p99_ms"`
	FailedPerSec float64                   `json:"failed_per_s"` // messages failed: requests, and gossip rejected or dropped
	PendingBytes uint64                    `json:"pending_bytes"`
	Overloaded   uint64                    `json:"overloaded"` // messages failed as overloaded so far
	Throttled    uint64                    `json:"throttled"`  // times a receiver paused reading so far
	Up           int                       `json:"nodes_up"`
	// Stuck counts the pair lanes stuck at the end of the interval, and
	// StuckWorstS is the longest of their stalls, in seconds.
	Stuck       int     `json:"stuck"`
	StuckWorstS float64 `json:"stuck_worst_s"`
}

// snapshot is the cumulative state of every node at one moment.
type snapshot struct {
	at           time.Time
	lanes        lanes
	latency      [routing.NumLanes]histSnapshot
	writeLatency histSnapshot
	writesOK     uint64
	failed       uint64
	up           int
	nodes        []nodeState
}

func takeSnapshot(nodes []*simNode) snapshot {
	s := snapshot{at: time.Now()}
	for _, n := range nodes {
		state := n.state()
		s.nodes = append(s.nodes, state)
		if state.up {
			s.up++
		}
		t := totalsOf(state.stats, state.up)
		for lane := range t {
			s.lanes[lane].add(&t[lane])
			h := n.ledger.latency[lane].snapshot()
			s.latency[lane].add(&h)
		}
		wl := n.ledger.writeLatency.snapshot()
		s.writeLatency.add(&wl)
		s.writesOK += n.ledger.writesOK.Load()
		s.failed += n.requestCounts().Failed + n.ledger.gossipRejected.total() + n.ledger.gossipDropped.total()
	}
	return s
}

// interval turns two snapshots into a sample.
func interval(prev, cur *snapshot, start time.Time) sample {
	dt := cur.at.Sub(prev.at).Seconds()
	s := sample{T: cur.at.Sub(start).Seconds(), Up: cur.up}
	for lane := range cur.lanes {
		c, p := &cur.lanes[lane], &prev.lanes[lane]
		s.MsgsPerSec[lane] = float64(c.sent-p.sent) / dt
		if writes := c.writes - p.writes; writes > 0 {
			s.MsgsPerWrite[lane] = float64(c.sent-p.sent) / float64(writes)
		}
		h := cur.latency[lane].minus(&prev.latency[lane])
		s.P50[lane], s.P99[lane] = ms(h.quantile(0.5)), ms(h.quantile(0.99))
		s.PendingBytes += c.pendingBytes
		s.Overloaded += c.dropped[transport.ReasonOverloaded]
		s.Throttled += c.throttled
	}
	w := cur.writeLatency.minus(&prev.writeLatency)
	s.WriteP99 = ms(w.quantile(0.99))
	s.WritesPerSec = float64(cur.writesOK-prev.writesOK) / dt
	s.FailedPerSec = float64(cur.failed-prev.failed) / dt
	return s
}

// sampleInterval is how often the progress display samples the nodes,
// and the stuck detector judges the pair lanes.
const sampleInterval = time.Second

// progress prints a line a second and keeps the samples.
type progress struct {
	out   io.Writer
	nodes []*simNode
	start time.Time
	total int // nodes expected up, for the display
	// upText renders the nodes up (default: "up/total"), under the
	// heading upLabel.
	upText  func(up int) string
	upLabel string
	// wide selects the wide form of the display (-wide).
	wide bool
	// stuck, if set, judges the pair lanes at every snapshot; pairs turns
	// the snapshot's nodes into the samples it judges. The run loop owns
	// stuck until it returns.
	stuck *stuckDetector
	pairs func(now time.Time, nodes []nodeState) []pairSample

	mu      sync.Mutex // guards out (events print too), samples and events
	samples []sample
	events  []event
	lines   int
}

func newProgress(out io.Writer, nodes []*simNode, start time.Time, total int) *progress {
	p := &progress{out: out, nodes: nodes, start: start, total: total}
	p.upText = func(up int) string { return fmt.Sprintf("%d/%d", up, p.total) }
	p.upLabel = "up"
	return p
}

// The progress display has two forms: the narrow one (default) fits
// consoleWidth with up to 64 nodes; the wide one (-wide) spells every
// column out.
const (
	progressHeaderWide = "" +
		"   time | msgs/s: urgent   small   large | p99 ms: urgent   small   large | writes/s  p99 ms | failed/s    pending  overloaded  paused | stuck | up\n"
	progressRowWide = "%6.1fs | %14s %7s %7s | %14s %7s %7s | %8s %7s | %8s %10s %11d %7d | %5d | %s\n"

	progressRow = "%6.1fs | %6s %6s %6s | %6s %6s %6s | %6s %6s | %6s %6s %6s %6s | %5s | %s\n"
)

// progressHeader is the narrow form's header: a line naming the groups of
// columns, then the columns. upLabel names the last column.
func progressHeader(upLabel string) string {
	groups := fmt.Sprintf("%7s | %-20s | %-20s | %-13s | %-27s |\n", "",
		"messages/s written", "p99 latency, ms", "writes acked", "failed/s, queued, so far")
	columns := fmt.Sprintf(strings.Replace(progressRow, "%6.1fs", "%7s", 1), "time",
		"urgent", "small", "large", "urgent", "small", "large", "per s", "p99 ms",
		"failed", "queued", "ovrld", "paused", "stuck", upLabel)
	return groups + columns
}

// run samples every second until ctx ends, then once more.
func (p *progress) run(ctx context.Context) {
	ticker := time.NewTicker(sampleInterval)
	defer ticker.Stop()
	prev := takeSnapshot(p.nodes)
	prev.at = p.start
	for {
		select {
		case <-ctx.Done():
			// The last, partial second, unless it is too short to mean much.
			if cur := takeSnapshot(p.nodes); cur.at.Sub(prev.at) > 200*time.Millisecond {
				p.add(p.judge(&cur, interval(&prev, &cur, p.start)))
			}
			return
		case <-ticker.C:
		}
		cur := takeSnapshot(p.nodes)
		p.add(p.judge(&cur, interval(&prev, &cur, p.start)))
		prev = cur
	}
}

// settle goes on sampling, a sample a second, after the writes and their
// drain, until every pair lane has been judged, none has messages waiting
// that a later sample could still find stuck, and every one has moved
// since settle began; or until max. A pair lane wedged late in the
// workload, or in a workload shorter than the grace and the bound
// together, has not been judged for the bound when the workload stops;
// closing the nodes then would fail what it holds, counted, and it would
// never show as stuck. The caller keeps messages going on every pair lane
// meanwhile (gossip, and probeLoop's probes), so that a live one moves and
// a wedged one has messages waiting. settle returns the pair lanes that
// did not move after it began, of all those sampled: none, when every
// pair still moves.
func (p *progress) settle(max time.Duration) (still []pairLane, all int) {
	if p.stuck == nil {
		return nil, 0
	}
	deadline := time.Now().Add(max)
	ticker := time.NewTicker(sampleInterval)
	defer ticker.Stop()
	prev := takeSnapshot(p.nodes)
	first := p.pairs(prev.at, prev.nodes)
	p.stuck.skipRequests(first)
	unmoved := make(map[pairLane]uint64, len(first)) // the count each started from
	for _, s := range first {
		unmoved[s.pairLane] = s.Moved
	}
	for time.Now().Before(deadline) {
		<-ticker.C
		cur := takeSnapshot(p.nodes)
		samples := p.pairs(cur.at, cur.nodes)
		p.add(p.judgeSamples(&cur, samples, interval(&prev, &cur, p.start)))
		prev = cur
		for _, s := range samples {
			if m, ok := unmoved[s.pairLane]; ok && s.Moved != m {
				delete(unmoved, s.pairLane)
			}
		}
		if p.stuck.undecided == 0 && len(unmoved) == 0 {
			break
		}
	}
	return slices.Collect(maps.Keys(unmoved)), len(first)
}

// judge adds to s what the stuck detector makes of cur.
func (p *progress) judge(cur *snapshot, s sample) sample {
	if p.stuck == nil {
		return s
	}
	return p.judgeSamples(cur, p.pairs(cur.at, cur.nodes), s)
}

// judgeSamples adds to s what the stuck detector makes of samples, cur's
// pair lanes.
func (p *progress) judgeSamples(cur *snapshot, samples []pairSample, s sample) sample {
	stuck, worst := p.stuck.observe(cur.at, samples)
	s.Stuck, s.StuckWorstS = stuck, worst.Seconds()
	return s
}

func (p *progress) add(s sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lines%20 == 0 {
		if p.wide {
			fmt.Fprint(p.out, progressHeaderWide)
		} else {
			fmt.Fprint(p.out, progressHeader(p.upLabel))
		}
	}
	p.lines++
	p.samples = append(p.samples, s)
	if p.wide {
		fmt.Fprintf(p.out, progressRowWide,
			s.T, rate(s.MsgsPerSec[routing.Urgent]), rate(s.MsgsPerSec[routing.Small]), rate(s.MsgsPerSec[routing.Large]),
			millis(s.P99[routing.Urgent]), millis(s.P99[routing.Small]), millis(s.P99[routing.Large]),
			rate(s.WritesPerSec), millis(s.WriteP99), rate(s.FailedPerSec), bytesIEC(s.PendingBytes),
			s.Overloaded, s.Throttled, s.Stuck, p.upText(s.Up))
		return
	}
	fmt.Fprintf(p.out, progressRow,
		s.T, rate(s.MsgsPerSec[routing.Urgent]), rate(s.MsgsPerSec[routing.Small]), rate(s.MsgsPerSec[routing.Large]),
		millis(s.P99[routing.Urgent]), millis(s.P99[routing.Small]), millis(s.P99[routing.Large]),
		rate(s.WritesPerSec), millis(s.WriteP99), rate(s.FailedPerSec), bytesShort(s.PendingBytes),
		countShort(s.Overloaded), countShort(s.Throttled), countShort(uint64(s.Stuck)), p.upText(s.Up))
}

// event records a fault or other event, and prints it between progress
// lines.
func (p *progress) event(node cluster.NodeID, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// One line per event: a joined error's lines are joined with "; ".
	what := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	e := event{T: time.Since(p.start).Seconds(), Node: string(node), What: what}
	p.events = append(p.events, e)
	fmt.Fprintf(p.out, "%6.1fs * %s\n", e.T, strings.TrimSpace(e.Node+" "+e.What))
}

func (p *progress) allEvents() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.events...)
}

func (p *progress) allSamples() []sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sample(nil), p.samples...)
}

func rate(v float64) string {
	switch {
	case v >= 100_000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 10_000:
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// countShort renders a count in at most 6 columns.
func countShort(n uint64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
	return fmt.Sprint(n)
}

// bytesShort renders a byte count in at most 6 columns: 512B, 984K, 5.1M.
func bytesShort(b uint64) string {
	v, unit := float64(b), "B"
	for _, u := range []string{"K", "M", "G", "T"} {
		if v < 1000 {
			break
		}
		v, unit = v/1024, u
	}
	if unit != "B" && v < 10 {
		return fmt.Sprintf("%.1f%s", v, unit)
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

func millis(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func bytesIEC(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
