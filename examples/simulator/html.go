package main

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/internode/internode/routing"
)

// The HTML report is one self-contained page: inline CSS, charts drawn as
// inline SVG by the code below, no script and nothing fetched.

func writeHTMLFile(path string, r *report) error {
	var buf bytes.Buffer
	if err := writeHTML(&buf, r); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func writeHTML(buf *bytes.Buffer, r *report) error {
	full, half := charts(r)
	return pageTemplate.Execute(buf, struct {
		R          *report
		Charts     []chart
		HalfCharts []chart
	}{R: r, Charts: full, HalfCharts: half})
}

var laneColors = [routing.NumLanes]string{"#d62728", "#1f77b4", "#2ca02c"}

// chart is one figure of the page and what it shows.
type chart struct {
	SVG     template.HTML
	Caption string
}

// Units of the charts' y axes. Every chart has one unit on its y axis (and
// seconds since the start on its x axis), named in its data-y-unit
// attribute and in each series' data-unit, so that a test can check in a
// browser that no chart mixes units.
const (
	unitMsgsPerSec  = "messages/s"
	unitMs          = "ms"
	unitMsgsPerWr   = "messages/write"
	unitKiB         = "KiB"
	unitMiB         = "MiB"
	unitPausesPerS  = "pauses/s"
	unitPairLanes   = "pair lanes"
	fullW, fullH    = 1000, 300 // a chart across the page
	halfW, halfH    = 492, 240  // one of two side by side
	halfGap         = 16
	markLabelHeight = 12
)

// charts draws the report's time series: three across the page, then the
// failures and back-pressure, one unit each, two by two.
func charts(r *report) (full, half []chart) {
	marks := r.Events
	xEnd := chartEnd(r)
	var throughput, latency, batching []series
	for _, lane := range routing.Lanes {
		name, color := lane.String(), laneColors[lane]
		throughput = append(throughput, seriesOf(name, color, false, r.Series, func(s sample) float64 { return s.MsgsPerSec[lane] }))
		latency = append(latency,
			seriesOf(name+" p99", color, false, r.Series, func(s sample) float64 { return s.P99[lane] }),
			seriesOf(name+" p50", color, true, r.Series, func(s sample) float64 { return s.P50[lane] }))
		if lane != routing.Urgent { // the urgent lane never coalesces
			batching = append(batching, seriesOf(name, color, false, r.Series, func(s sample) float64 { return s.MsgsPerWrite[lane] }))
		}
	}
	throughput = append(throughput, seriesOf("writes acked", "#7f7f7f", true, r.Series, func(s sample) float64 { return s.WritesPerSec }))
	latency = append(latency, seriesOf("write (quorum) p99", "#7f7f7f", false, r.Series, func(s sample) float64 { return s.WriteP99 }))
	full = []chart{
		{lineChart(chartSpec{"Throughput per lane", unitMsgsPerSec, true, fullW, fullH, xEnd}, throughput, marks),
			"Messages written to sockets per second by all nodes, by lane: replica requests and their acknowledgements " +
				"on small and large, gossip on urgent. Dashed: database writes acknowledged by a quorum. " +
				"Dotted verticals: the events, numbered as in Events."},
		{lineChart(chartSpec{"Latency percentiles", unitMs, true, fullW, fullH, xEnd}, latency, marks),
			"Per second, solid p99 and dashed p50. Small and large: round trip of replica requests, from Request to " +
				"its response. Urgent: gossip digests one way, from creation to the receiver's handler. " +
				"Grey: a database write, until a quorum of 2 of 3 replicas acknowledged it."},
		{lineChart(chartSpec{"Messages per write", unitMsgsPerWr, false, fullW, fullH, xEnd}, batching, marks),
			"Messages per socket write on the small and large lanes, what coalescing gathered. Large messages go out " +
				"in 256 KiB parts interleaved with each other, so that lane makes more writes than messages."},
	}
	queuedUnit, queuedScale := unitKiB, 1024.0
	for _, smp := range r.Series {
		if smp.PendingBytes > 10<<20 {
			queuedUnit, queuedScale = unitMiB, 1<<20
		}
	}
	half = []chart{
		{lineChart(chartSpec{"Failed messages", unitMsgsPerSec, false, halfW, halfH, xEnd},
			[]series{seriesOf("failed", "#d62728", false, r.Series, func(s sample) float64 { return s.FailedPerSec })}, marks),
			"Messages failed per second: replica requests, and gossip digests refused or dropped."},
		{lineChart(chartSpec{"Queued outbound", queuedUnit, false, halfW, halfH, xEnd},
			[]series{seriesOf("queued", "#9467bd", false, r.Series, func(s sample) float64 { return float64(s.PendingBytes) / queuedScale })}, marks),
			"Bytes held in the nodes' outbound queues at each second."},
		{lineChart(chartSpec{"Reads paused", unitPausesPerS, false, halfW, halfH, xEnd},
			[]series{pausesPerSecond(r.Series)}, marks),
			"Times per second a receiver paused reading a connection for want of inbound capacity (back-pressure)."},
		{lineChart(chartSpec{"Stuck pair lanes", unitPairLanes, false, halfW, halfH, xEnd},
			[]series{seriesOf("stuck", "#8c564b", false, r.Series, func(s sample) float64 { return float64(s.Stuck) })}, marks),
			"Pair lanes stuck at each second (see Stuck pair lanes): must stay at 0."},
	}
	return full, half
}

// chartEnd is the end of the charts' time axis, in seconds since the
// start: the end of the workload, or of the last sample if later (the
// sample taken as the workload stops). Events after it are in the Events
// table only.
func chartEnd(r *report) float64 {
	end := r.ElapsedS - r.DrainS
	if n := len(r.Series); n > 0 {
		end = math.Max(end, r.Series[n-1].T)
	}
	return end
}

// pausesPerSecond turns the cumulative count of paused reads into a rate.
func pausesPerSecond(samples []sample) series {
	s := series{name: "paused", color: "#ff7f0e"}
	var prevT float64
	var prev uint64
	for _, smp := range samples {
		rate := 0.0
		if dt := smp.T - prevT; dt > 0 && smp.Throttled >= prev {
			rate = float64(smp.Throttled-prev) / dt
		}
		s.x, s.y = append(s.x, smp.T), append(s.y, rate)
		prevT, prev = smp.T, smp.Throttled
	}
	return s
}

type series struct {
	name   string
	color  string
	dashed bool
	x, y   []float64 // y NaN: no value (a gap)
}

func seriesOf(name, color string, dashed bool, samples []sample, value func(sample) float64) series {
	s := series{name: name, color: color, dashed: dashed}
	for _, smp := range samples {
		v := value(smp)
		s.x = append(s.x, smp.T)
		s.y = append(s.y, v)
	}
	return s
}

// chartSpec is what a chart shows and its size: unit is the y axis's, the
// x axis is seconds since the start of the run.
type chartSpec struct {
	title    string
	unit     string
	logScale bool
	w, h     int
	xEnd     float64 // the end of the x axis, at least: the workload's end
}

const padTop, padBottom = 30, 40

// lineChart draws series against time as an SVG. On a log scale, values
// <= 0 are gaps. A chart of one series has no legend (its title names it).
// The events in marks are dotted verticals labelled with their number in
// the Events table, the labels stacked so that they do not overlap; those
// after the x axis's end (after the workload) are not drawn.
func lineChart(spec chartSpec, ss []series, marks []event) template.HTML {
	padLeft, padRight := 60, 20
	if len(ss) > 1 {
		longest := 0
		for _, s := range ss {
			longest = max(longest, len(s.name))
		}
		padRight = 50 + 6*longest
	}
	xMax, yMin, yMax := math.Max(1, spec.xEnd), math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i, y := range s.y {
			xMax = math.Max(xMax, s.x[i])
			if spec.logScale && y <= 0 {
				continue
			}
			yMin, yMax = math.Min(yMin, y), math.Max(yMax, y)
		}
	}
	if math.IsInf(yMin, 1) {
		yMin, yMax = 0, 1
	}
	var ticks []float64
	if spec.logScale {
		yMin = math.Pow(10, math.Floor(math.Log10(yMin)))
		yMax = math.Pow(10, math.Ceil(math.Log10(yMax)))
		if yMax <= yMin {
			yMax = yMin * 10
		}
		for v := yMin; v <= yMax*1.0001; v *= 10 {
			ticks = append(ticks, v)
		}
	} else {
		yMin = 0
		step := niceStep(yMax / 5)
		yMax = math.Max(step, math.Ceil(yMax/step)*step)
		for i := 0.0; i*step <= yMax*1.0001; i++ { // multiples, not sums: no 0.6000000000000001
			ticks = append(ticks, i*step)
		}
	}
	plotW, plotH := float64(spec.w-padLeft-padRight), float64(spec.h-padTop-padBottom)
	px := func(x float64) float64 { return float64(padLeft) + x/xMax*plotW }
	py := func(y float64) float64 {
		f := (y - yMin) / (yMax - yMin)
		if spec.logScale {
			f = (math.Log10(y) - math.Log10(yMin)) / (math.Log10(yMax) - math.Log10(yMin))
		}
		return float64(padTop) + (1-f)*plotH
	}
	yLabel := spec.unit
	if spec.logScale {
		yLabel += " (log)"
	}

	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s" data-x-unit="s" data-y-unit="%s">`,
		spec.w, spec.h, spec.w, spec.h, esc(spec.title), esc(spec.unit))
	fmt.Fprintf(&b, `<text x="%d" y="18" class="title">%s</text>`, padLeft, esc(spec.title))
	fmt.Fprintf(&b, `<text x="12" y="%d" class="axis y-label" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>`,
		padTop+int(plotH/2), padTop+int(plotH/2), esc(yLabel))
	for _, v := range ticks {
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, px(xMax), y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="axis" text-anchor="end">%s</text>`, padLeft-6, y+4, tickLabel(v))
	}
	xStep := niceStep(xMax / float64(max(2, int(plotW)/90)))
	for i := 0.0; i*xStep <= xMax+1e-9; i++ {
		x := i * xStep
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="axis" text-anchor="middle">%ss</text>`, px(x), spec.h-padBottom+16, tickLabel(x))
	}
	// Each label goes in the first row, from the top of the plot, where it
	// clears the labels already there (10 px font: at most 7 px a digit).
	var rowEnds []float64
	for i, m := range marks {
		if m.T > xMax+1e-6 { // float rounding of xEnd
			continue
		}
		x := px(m.T)
		label := fmt.Sprint(i + 1)
		row := 0
		for row < len(rowEnds) && x < rowEnds[row]+3 {
			row++
		}
		if row == len(rowEnds) {
			rowEnds = append(rowEnds, 0)
		}
		rowEnds[row] = x + 3 + 7*float64(len(label))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="mark"><title>%s</title></line>`,
			x, x, padTop, float64(padTop)+plotH, esc(fmt.Sprintf("%d: %.1f s %s %s", i+1, m.T, m.Node, m.What)))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="mark-label">%s</text>`, x+3, padTop+10+markLabelHeight*row, label)
	}
	for i, s := range ss {
		var d strings.Builder
		pen := false
		for j, y := range s.y {
			if math.IsNaN(y) || (spec.logScale && y <= 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, px(s.x[j]), py(y))
			pen = true
		}
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"%s data-series="%s" data-unit="%s"/>`,
			strings.TrimSpace(d.String()), s.color, dash, esc(s.name), esc(spec.unit))
		if len(ss) > 1 {
			ly := padTop + 8 + 18*i
			lx := spec.w - padRight + 14
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, lx, lx+22, ly, ly, s.color, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%d" class="legend">%s</text>`, lx+28, ly+4, esc(s.name))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.4gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.4gk", v/1e3)
	}
	return fmt.Sprintf("%.4g", v)
}

// reasonTokens renders failure counts by reason as tokens that a line
// may break between but not inside, the peer's after a "peer:" label.
func reasonTokens(failed, peer map[string]uint64) template.HTML {
	var b strings.Builder
	tokens := func(m map[string]uint64, label string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			switch {
			case b.Len() > 0 && label != "":
				b.WriteString("<br>") // the peer's reasons on a line of their own
			case b.Len() > 0:
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, `<span class="tok">%s%s=%d</span>`, label, template.HTMLEscapeString(k), m[k])
			label = ""
		}
	}
	tokens(failed, "")
	tokens(peer, "peer: ")
	return template.HTML(b.String())
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":     millis,
	"tokens": reasonTokens,
	"mib":    func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) },
	"iec":    func(b int64) string { return bytesIEC(uint64(max(b, 0))) },
	"f1":     func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"inc":    func(i int) int { return i + 1 },
	"list":   listNames,
	"deref": func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>internode simulator report</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.l, th.l { text-align: left; } th.group { text-align: center; border-left: 1px solid #ddd; }
td.n, th.n { white-space: nowrap; } .tok { white-space: nowrap; }
.scroll { overflow-x: auto; } /* the widest tables fit 1000 px; in a narrower window they scroll, not the page */
.summary { font: 14px monospace; padding: 10px; background: #f4f9f4; border: 1px solid #bcd8bc; overflow-wrap: anywhere; }
.bad { background: #fbeaea; border-color: #e0a0a0; }
figure { margin: 18px 0; } figcaption { color: #555; }
.halves { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); column-gap: 16px; }
.halves figure { margin: 10px 0; }
svg { display: block; width: 100%; height: auto; box-sizing: border-box; margin: 0 0 6px; background: #fff; border: 1px solid #e4e4e4; }
svg .title { font: bold 14px system-ui, sans-serif; } svg .axis, svg .legend { font: 11px system-ui, sans-serif; fill: #444; }
svg .grid { stroke: #eee; } svg .mark { stroke: #999; stroke-dasharray: 3 3; } svg .mark-label { font: 10px system-ui, sans-serif; fill: #666; }
</style>
</head>
<body>
<h1>internode simulator report</h1>
<p>{{.R.Mode}} mode: {{.R.Nodes}} node(s). The workload ran for {{f1 .R.WorkloadS}} s (-duration {{f1 .R.DurationS}} s): {{.R.Rate}}
writes/s per node, values around {{.R.ValueSize}} B (2% between 96 KiB and 1 MiB), coalescing <b>{{.R.Strategy}}</b>, replica
request timeout {{.R.TimeoutMs}} ms. Then the nodes took {{f1 .R.DrainS}} s to finish what was in flight (writes, a restart),
drain their queues and close; the charts show the workload.</p>
<p class="summary{{if or (ne .R.Summary.Lost 0) (ne .R.Summary.Stuck 0)}} bad{{end}}">{{.R.SummaryLine}}</p>
<p>writes: database writes the nodes coordinated; writes_failed: those that failed (a write that failed for want of replicas,
unavailable, sent no message). The rest counts messages, replica requests and gossip digests: sent: handed by the nodes to
their transports; delivered: requests acknowledged and digests written to their socket; failed: ended with an error
(reasons below); lost: no outcome at all — must be 0; stuck: pair lanes (sender, receiver, lane) that had messages waiting
and none getting through, or every request failing, for longer than the bound, at any time during the run — must be 0.</p>
{{with .R.Stuck}}<h2>Stuck pair lanes</h2>
<p>Sampled every second: messages waiting on a pair lane (held by the sender, or written and not yet arrived) with
none arriving at the receiver, or every replica request on it failing, for over {{f1 .AfterS}} s. A pair lane whose
sender or receiver was down, or had (re)started less than {{f1 .GraceS}} s before, is not judged.
Pair lanes judged: {{.Watched}}; stuck: {{len .Pairs}}.</p>
{{if .Pairs}}<table><tr><th class="l">from</th><th class="l">to</th><th class="l">lane</th><th class="l">why</th><th>first stalled</th>
<th>longest stall</th><th>stalls</th><th>stalled at the end</th></tr>
{{range .Pairs}}<tr><td class="l">{{.From}}</td><td class="l">{{.To}}</td><td class="l">{{.Lane}}</td><td class="l">{{range $i, $w := .Why}}{{if $i}}, {{end}}{{$w}}{{end}}</td>
<td class="n">{{f1 .SinceS}} s</td><td class="n">{{f1 .LongestS}} s</td><td>{{.Stalls}}</td><td class="n">{{if .OngoingS}}{{f1 .OngoingS}} s{{else}}-{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{with .R.Faults}}<h2>Faults</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .R.Recovery}}<p>Recovery: {{.Node}} restarted at {{f1 .RestartedAt}} s; the first write it acknowledged came
{{if lt .FirstAckAfter 0.0}}never{{else}}{{ms .FirstAckAfter}} ms{{end}} later; {{.SeenBy}} of {{.Peers}} peers gossiped its new generation
{{if lt .GossipSeenAfter 0.0}}(not all){{else}}within {{ms .GossipSeenAfter}} ms{{end}}.
{{with .Bootstrap}}{{if .Error}}Its bootstrap failed: {{.Error}}.{{else}}Having lost its data, it pulled {{iec .FileBytes}} of data files
from {{list .From}} with SendFile and applied {{.Applied}} writes of its keys in {{ms .TookMs}} ms.{{end}}{{end}}</p>{{end}}
{{range .Charts}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
<h2>Failures and back-pressure</h2>
<div class="halves">{{range .HalfCharts}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>
<h2>Per node and lane</h2>
<p>Outbound messages of each node, by lane (requests, responses and gossip), from the transport's counters. Latency: round trip of
replica requests (small, large), one-way delay of gossip received (urgent). Paused: times the node stopped reading a peer for want
of capacity. Failed by reason: why messages failed at this node; after "peer:", why the peers dropped messages they received.</p>
<div class="scroll"><table>
<tr><th class="l">node</th><th class="l">lane</th><th>sent</th><th>written</th><th>delivered</th><th>peer dropped</th><th>failed</th><th>msgs per write</th><th>MiB</th>
<th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>paused</th><th class="l">failed by reason</th></tr>
{{range .R.PerNode}}{{$id := .ID}}{{range .Lanes}}<tr><td class="l">{{$id}}</td><td class="l">{{.Lane}}</td><td>{{.Sent}}</td><td>{{.Written}}</td>
<td>{{deref .Delivered}}</td><td>{{deref .PeerDropped}}</td><td>{{.Failed}}</td><td>{{f1 .MsgsPerWrite}}</td><td>{{mib .Bytes}}</td><td>{{ms .Latency.P50}}</td>
<td>{{ms .Latency.P99}}</td><td>{{ms .Latency.P999}}</td><td>{{.Paused}}</td><td class="l">{{tokens .FailedBy .PeerDroppedBy}}</td></tr>
{{end}}{{end}}</table></div>
<h2>Workload per node</h2>
<div class="scroll"><table>
<tr><th></th><th class="group" colspan="5">database writes</th><th class="group" colspan="4">replica requests</th><th class="group" colspan="4">gossip digests</th><th></th></tr>
<tr><th class="l">node</th><th>started</th><th>ok</th><th>failed</th><th>p50 ms</th><th>p99 ms</th><th>sent</th><th>acked</th><th>failed</th><th>lost</th>
<th>sent</th><th>written</th><th>failed</th><th>lost</th><th class="l">failed by reason</th></tr>
{{range .R.PerNode}}<tr><td class="l">{{.ID}}{{if .Slow}} (slow){{end}}{{if .Restarts}} (restarted){{end}}</td><td>{{.Writes.Started}}</td><td>{{.Writes.OK}}</td>
<td>{{.Writes.Failed}}</td><td>{{ms .Writes.Latency.P50}}</td><td>{{ms .Writes.Latency.P99}}</td>
<td>{{.Requests.Sent}}</td><td>{{.Requests.Delivered}}</td><td>{{.Requests.Failed}}</td><td>{{.Requests.Lost}}</td>
<td>{{.Gossip.Sent}}</td><td>{{.Gossip.Delivered}}</td><td>{{.Gossip.Failed}}</td><td>{{.Gossip.Lost}}</td>
<td class="l">{{with .Writes.FailedBy}}writes: {{tokens . nil}}<br>{{end}}{{with .Requests.FailedBy}}requests: {{tokens . nil}}<br>{{end}}{{with .Gossip.FailedBy}}gossip: {{tokens . nil}}{{end}}</td></tr>
{{end}}</table></div>
{{with .R.Events}}<h2>Events</h2><p>Numbered as on the charts' dotted verticals; those after the workload are not on the charts.</p><table><tr><th>#</th><th>time</th><th class="l">node</th><th class="l">what</th></tr>
{{range $i, $e := .}}<tr><td>{{inc $i}}</td><td class="n">{{f1 $e.T}} s</td><td class="l">{{$e.Node}}</td><td class="l">{{$e.What}}</td></tr>{{end}}</table>{{end}}
{{with .R.Notes}}<h2>Notes</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
