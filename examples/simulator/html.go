package main

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
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
	return pageTemplate.Execute(buf, struct {
		R      *report
		Charts []chart
	}{R: r, Charts: charts(r)})
}

var laneColors = [routing.NumLanes]string{"#d62728", "#1f77b4", "#2ca02c"}

// chart is one figure of the page and what it shows.
type chart struct {
	SVG     template.HTML
	Caption string
}

// charts draws the report's time series.
func charts(r *report) []chart {
	marks := r.Events
	var throughput, latency, batching, trouble []series
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
	trouble = append(trouble,
		seriesOf("failed msgs/s", "#d62728", false, r.Series, func(s sample) float64 { return s.FailedPerSec }),
		seriesOf("pending KiB", "#9467bd", false, r.Series, func(s sample) float64 { return float64(s.PendingBytes) / 1024 }),
		seriesOf("paused reads (total)", "#ff7f0e", true, r.Series, func(s sample) float64 { return float64(s.Throttled) }),
		seriesOf("stuck pair lanes", "#8c564b", false, r.Series, func(s sample) float64 { return float64(s.Stuck) }))
	return []chart{
		{lineChart("Throughput per lane", "messages/s (log)", true, throughput, marks),
			"Messages written to sockets per second by all nodes, by lane: replica requests and their acknowledgements " +
				"on small and large, gossip on urgent. Dashed: database writes acknowledged by a quorum. " +
				"Dotted verticals: the faults (see Events)."},
		{lineChart("Latency percentiles", "ms (log)", true, latency, marks),
			"Per second, solid p99 and dashed p50. Small and large: round trip of replica requests, from Request to " +
				"its response. Urgent: gossip digests one way, from creation to the receiver's handler. " +
				"Grey: a database write, until a quorum of 2 of 3 replicas acknowledged it."},
		{lineChart("Messages per write", "messages/write", false, batching, marks),
			"Messages per socket write on the small and large lanes, what coalescing gathered. Large messages go out " +
				"in 256 KiB parts interleaved with each other, so that lane makes more writes than messages."},
		{lineChart("Failures and back-pressure", "count", false, trouble, marks),
			"Messages failed per second (requests and gossip), bytes queued in the nodes' outbound queues, " +
				"how many times so far a receiver paused reading a connection for want of inbound capacity, and " +
				"how many pair lanes were stuck at each second (see Stuck pair lanes)."},
	}
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

const (
	chartW, chartH                           = 760, 280
	padLeft, padRight, padTop, padBottom int = 60, 170, 30, 40
)

// lineChart draws series against time as an SVG. On a log scale, values
// <= 0 are gaps.
func lineChart(title, yLabel string, logScale bool, ss []series, marks []event) template.HTML {
	xMax, yMin, yMax := 1.0, math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i, y := range s.y {
			xMax = math.Max(xMax, s.x[i])
			if logScale && y <= 0 {
				continue
			}
			yMin, yMax = math.Min(yMin, y), math.Max(yMax, y)
		}
	}
	if math.IsInf(yMin, 1) {
		yMin, yMax = 0, 1
	}
	var ticks []float64
	if logScale {
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
		for v := 0.0; v <= yMax*1.0001; v += step {
			ticks = append(ticks, v)
		}
	}
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBottom)
	px := func(x float64) float64 { return float64(padLeft) + x/xMax*plotW }
	py := func(y float64) float64 {
		f := (y - yMin) / (yMax - yMin)
		if logScale {
			f = (math.Log10(y) - math.Log10(yMin)) / (math.Log10(yMax) - math.Log10(yMin))
		}
		return float64(padTop) + (1-f)*plotH
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="18" class="title">%s</text>`, padLeft, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="12" y="%d" class="axis" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>`,
		padTop+int(plotH/2), padTop+int(plotH/2), template.HTMLEscapeString(yLabel))
	for _, v := range ticks {
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, px(xMax), y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="axis" text-anchor="end">%s</text>`, padLeft-6, y+4, tickLabel(v))
	}
	xStep := niceStep(xMax / 8)
	for x := 0.0; x <= xMax+1e-9; x += xStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="axis" text-anchor="middle">%gs</text>`, px(x), chartH-padBottom+16, x)
	}
	for _, m := range marks {
		if m.T > xMax || m.Node == "" {
			continue
		}
		x := px(m.T)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="mark"><title>%s</title></line>`,
			x, x, padTop, float64(padTop)+plotH, template.HTMLEscapeString(fmt.Sprintf("%.1f s %s %s", m.T, m.Node, m.What)))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="mark-label">%s</text>`, x+3, padTop+10, template.HTMLEscapeString(m.Node))
	}
	for i, s := range ss {
		var d strings.Builder
		pen := false
		for j, y := range s.y {
			if math.IsNaN(y) || (logScale && y <= 0) {
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
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`, strings.TrimSpace(d.String()), s.color, dash)
		ly := padTop + 8 + 18*i
		lx := chartW - padRight + 14
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, lx, lx+22, ly, ly, s.color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="legend">%s</text>`, lx+28, ly+4, template.HTMLEscapeString(s.name))
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
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":      millis,
	"reasons": reasons,
	"mib":     func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) },
	"iec":     func(b int64) string { return bytesIEC(uint64(max(b, 0))) },
	"f1":      func(v float64) string { return fmt.Sprintf("%.1f", v) },
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
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.summary { font: 15px monospace; padding: 10px; background: #f4f9f4; border: 1px solid #bcd8bc; }
.bad { background: #fbeaea; border-color: #e0a0a0; }
figure { margin: 18px 0; } figcaption { color: #555; max-width: 760px; }
svg { display: block; margin: 0 0 6px; background: #fff; border: 1px solid #e4e4e4; }
svg .title { font: bold 14px system-ui, sans-serif; } svg .axis, svg .legend { font: 11px system-ui, sans-serif; fill: #444; }
svg .grid { stroke: #eee; } svg .mark { stroke: #999; stroke-dasharray: 3 3; } svg .mark-label { font: 10px system-ui, sans-serif; fill: #777; }
</style>
</head>
<body>
<h1>internode simulator report</h1>
<p>{{.R.Mode}} mode: {{.R.Nodes}} node(s) for {{f1 .R.ElapsedS}} s, {{.R.Rate}} writes/s per node, values around {{.R.ValueSize}} B
(2% between 96 KiB and 1 MiB), coalescing <b>{{.R.Strategy}}</b>, replica request timeout {{.R.TimeoutMs}} ms.</p>
<p class="summary{{if or (ne .R.Summary.Lost 0) (ne .R.Summary.Stuck 0)}} bad{{end}}">{{.R.SummaryLine}}</p>
<p>sent: replica requests and gossip digests the nodes handed to their transports; delivered: requests acknowledged and
digests written to their socket; failed: ended with an error (reasons below); lost: no outcome at all — must be 0;
stuck: pair lanes (sender, receiver, lane) that had messages waiting and none getting through, or every request
failing, for longer than the bound, at any time during the run — must be 0.</p>
{{with .R.Stuck}}<h2>Stuck pair lanes</h2>
<p>Sampled every second: messages waiting on a pair lane (held by the sender, or written and not yet arrived) with
none arriving at the receiver, or every replica request on it failing, for over {{f1 .AfterS}} s. A pair lane whose
sender or receiver was down, or had (re)started less than {{f1 .GraceS}} s before, is not judged.
Pair lanes judged: {{.Watched}}; stuck: {{len .Pairs}}.</p>
{{if .Pairs}}<table><tr><th class="l">from</th><th class="l">to</th><th class="l">lane</th><th class="l">why</th><th>first stalled</th>
<th>longest stall</th><th>stalls</th><th>stalled at the end</th></tr>
{{range .Pairs}}<tr><td class="l">{{.From}}</td><td class="l">{{.To}}</td><td class="l">{{.Lane}}</td><td class="l">{{range $i, $w := .Why}}{{if $i}}, {{end}}{{$w}}{{end}}</td>
<td>{{f1 .SinceS}} s</td><td>{{f1 .LongestS}} s</td><td>{{.Stalls}}</td><td>{{if .OngoingS}}{{f1 .OngoingS}} s{{else}}-{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{with .R.Faults}}<h2>Faults</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .R.Recovery}}<p>Recovery: {{.Node}} restarted at {{f1 .RestartedAt}} s; the first write it acknowledged came
{{if lt .FirstAckAfter 0.0}}never{{else}}{{ms .FirstAckAfter}} ms{{end}} later; {{.SeenBy}} of {{.Peers}} peers gossiped its new generation
{{if lt .GossipSeenAfter 0.0}}(not all){{else}}within {{ms .GossipSeenAfter}} ms{{end}}.
{{with .Bootstrap}}{{if .Error}}Its bootstrap failed: {{.Error}}.{{else}}Having lost its data, it pulled {{iec .FileBytes}} of data files
from {{range $i, $p := .From}}{{if $i}} and {{end}}{{$p}}{{end}} with SendFile and applied {{.Applied}} writes of its keys in {{ms .TookMs}} ms.{{end}}{{end}}</p>{{end}}
{{range .Charts}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
<h2>Per node and lane</h2>
<p>Outbound messages of each node, by lane (requests, responses and gossip), from the transport's counters. Latency: round trip of
replica requests (small, large), one-way delay of gossip received (urgent). Paused: times the node stopped reading a peer for want of capacity.</p>
<table>
<tr><th class="l">node</th><th class="l">lane</th><th>sent</th><th>written</th><th>delivered</th><th>peer dropped</th><th>failed</th><th>msgs/write</th><th>MiB</th>
<th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>paused</th><th class="l">failed by reason</th></tr>
{{range .R.PerNode}}{{$id := .ID}}{{range .Lanes}}<tr><td class="l">{{$id}}</td><td class="l">{{.Lane}}</td><td>{{.Sent}}</td><td>{{.Written}}</td>
<td>{{deref .Delivered}}</td><td>{{deref .PeerDropped}}</td><td>{{.Failed}}</td><td>{{f1 .MsgsPerWrite}}</td><td>{{mib .Bytes}}</td><td>{{ms .Latency.P50}}</td>
<td>{{ms .Latency.P99}}</td><td>{{ms .Latency.P999}}</td><td>{{.Paused}}</td><td class="l">{{reasons .FailedBy}}{{with .PeerDroppedBy}} peer: {{reasons .}}{{end}}</td></tr>
{{end}}{{end}}</table>
<h2>Workload per node</h2>
<table>
<tr><th class="l">node</th><th>writes</th><th>ok</th><th>failed</th><th>p50 ms</th><th>p99 ms</th><th>requests</th><th>acked</th><th>failed</th><th>lost</th>
<th>gossip</th><th>written</th><th>failed</th><th>lost</th><th class="l">failures</th></tr>
{{range .R.PerNode}}<tr><td class="l">{{.ID}}{{if .Slow}} (slow){{end}}{{if .Restarts}} (restarted){{end}}</td><td>{{.Writes.Started}}</td><td>{{.Writes.OK}}</td>
<td>{{.Writes.Failed}}</td><td>{{ms .Writes.Latency.P50}}</td><td>{{ms .Writes.Latency.P99}}</td>
<td>{{.Requests.Sent}}</td><td>{{.Requests.Delivered}}</td><td>{{.Requests.Failed}}</td><td>{{.Requests.Lost}}</td>
<td>{{.Gossip.Sent}}</td><td>{{.Gossip.Delivered}}</td><td>{{.Gossip.Failed}}</td><td>{{.Gossip.Lost}}</td>
<td class="l">{{with .Writes.FailedBy}}writes: {{reasons .}}; {{end}}{{with .Requests.FailedBy}}requests: {{reasons .}}; {{end}}{{with .Gossip.FailedBy}}gossip: {{reasons .}}{{end}}</td></tr>
{{end}}</table>
{{with .R.Events}}<h2>Events</h2><table><tr><th>time</th><th class="l">node</th><th class="l">what</th></tr>
{{range .}}<tr><td>{{f1 .T}} s</td><td class="l">{{.Node}}</td><td class="l">{{.What}}</td></tr>{{end}}</table>{{end}}
{{with .R.Notes}}<h2>Notes</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
