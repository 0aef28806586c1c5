package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// writeChart draws panels side by side, one per scenario's Chart and one
// per entry of its MoreCharts: a grouped bar chart with one group per
// metric and one bar per system. The format follows the file's extension,
// .svg or .png.
func writeChart(path string, scenarios []*Scenario, results []Result) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("chart %s: want a .svg or .png file", path)
	}
	var row []*plot.Plot
	for _, sc := range scenarios {
		for i, metrics := range append([][]Metric{sc.Chart}, sc.MoreCharts...) {
			p, err := scenarioPlot(sc, metrics, results)
			if err != nil {
				return err
			}
			if p != nil {
				if i > 0 {
					p.Title.Text += " (" + metricLabels(metrics) + ")"
				}
				row = append(row, p)
			}
		}
	}
	if len(row) == 0 {
		return fmt.Errorf("chart %s: nothing to draw", path)
	}
	width, height := vg.Length(len(row))*11*vg.Centimeter, 10*vg.Centimeter

	var canvas io.WriterTo
	var dc draw.Canvas
	if ext == ".svg" {
		c := vgsvg.New(width, height)
		canvas, dc = c, draw.New(c)
	} else {
		c := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(144))
		canvas, dc = vgimg.PngCanvas{Canvas: c}, draw.New(c)
	}
	tiles := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Centimeter, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: vg.Millimeter}
	for i, p := range row {
		p.Draw(tiles.At(dc, i, 0))
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scenarioPlot returns a panel of one scenario with the given metrics, or
// nil without results.
func scenarioPlot(sc *Scenario, chart []Metric, results []Result) (*plot.Plot, error) {
	var mine []Result
	for _, r := range results {
		if r.Scenario == sc.Name && r.Error == "" {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 || len(chart) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = sc.Name
	p.Y.Label.Text = metricUnits(chart)
	p.Y.Min = 0
	p.Legend.Top = true
	// Keep every group within the panel's ~80 mm of plotting width.
	barWidth := min(8*vg.Millimeter, 70*vg.Millimeter/vg.Length(len(mine)*len(chart)))
	labels := make([]string, len(chart))
	for i, m := range chart {
		labels[i] = m.Label
	}
	highest, lowest := 0.0, math.Inf(1)
	for i, r := range mine {
		vals := make(plotter.Values, len(chart))
		for j, m := range chart {
			vals[j], _ = m.Value(r)
			highest = max(highest, vals[j])
			if vals[j] > 0 {
				lowest = min(lowest, vals[j])
			}
		}
		bars, err := plotter.NewBarChart(vals, barWidth)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = (vg.Length(i) - vg.Length(len(mine)-1)/2) * barWidth
		p.Add(bars)
		p.Legend.Add(r.System, bars)
	}
	p.NominalX(labels...)
	p.Y.Max = highest * 1.35 // headroom for the legend
	if isLatency(chart) && highest > 0 {
		// Latencies span decades (p50 vs p99.9, one system vs another).
		p.Y.Scale = clampedLog{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = lowest / 2
		p.Y.Max = highest * 4
	}
	return p, nil
}

// isLatency reports whether a panel shows latencies.
func isLatency(ms []Metric) bool { return strings.HasSuffix(ms[0].Label, " µs") }

// metricUnits labels a panel's y axis from its metrics' labels.
func metricUnits(ms []Metric) string {
	switch {
	case isLatency(ms):
		return "µs, log scale (lower is better)"
	case ms[0].Lower:
		return ms[0].Label + " (lower is better)"
	}
	return ms[0].Label + " (higher is better)"
}

func metricLabels(ms []Metric) string {
	labels := make([]string, len(ms))
	for i, m := range ms {
		labels[i] = m.Label
	}
	return strings.Join(labels, ", ")
}

// clampedLog is a log scale on which values below the axis minimum (the
// bars' zero base) sit at the minimum instead of failing.
type clampedLog struct{}

func (clampedLog) Normalize(lo, hi, x float64) float64 {
	x = max(x, lo)
	return (math.Log(x) - math.Log(lo)) / (math.Log(hi) - math.Log(lo))
}
