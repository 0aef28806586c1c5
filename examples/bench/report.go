package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// writeJSON prints one JSON object per result, one per line.
func writeJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// writeTable prints the results as an aligned table; then, for each
// scenario with Columns, a table of those; then every target whose systems
// were measured, with its ratio (or difference) and verdict.
func writeTable(w io.Writer, scenarios []*Scenario, results []Result) error {
	fmt.Fprintln(w, hostLine())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsystem\tpayload B\tmsgs/s\tMB/s\tp50 µs\tp99 µs\tp99.9 µs\tsvc p50 µs\tCPU µs/msg\twrites/msg\tvec wr/msg\tlost\trejected\tsend errors\tload\t")
	for _, r := range results {
		lost := strconv.FormatInt(r.Lost, 10)
		if !r.Drained {
			lost += " (drain timeout)"
		}
		if r.Error != "" {
			lost += " ERROR: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%d\t%d\t%s\t\n",
			r.Scenario, r.System, r.PayloadBytes, humanCount(r.MsgsPerSec), r.MBPerSec,
			optional(r.P50us, 1), optional(r.P99us, 1), optional(r.P999us, 1), optional(r.ServiceP50us, 1),
			r.CPUusPerMsg, optionalG(r.WritesPerMsg), optionalG(r.VectoredWritesPerMsg), lost, r.Rejected, r.SendErrors, optional(r.LoadAvg, 1))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	for _, sc := range scenarios {
		if len(sc.Columns) == 0 || !hasScenario(results, sc.Name) {
			continue
		}
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		labels := make([]string, len(sc.Columns))
		for i, m := range sc.Columns {
			labels[i] = m.Label
		}
		fmt.Fprintf(tw, "scenario\tsystem\t%s\t\n", strings.Join(labels, "\t"))
		for _, r := range results {
			if r.Scenario != sc.Name {
				continue
			}
			vals := make([]string, len(sc.Columns))
			for i, m := range sc.Columns {
				vals[i] = "-"
				if v, ok := m.Value(r); ok {
					vals[i] = formatFigure(v)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", r.Scenario, r.System, strings.Join(vals, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmetric\tsystem / baseline\tratio\twanted\tverdict")
	for _, sc := range scenarios {
		for _, t := range sc.Targets {
			shown, met, ok := t.evaluate(sc.Name, results)
			verdict := "n/a (not measured)"
			if !ok {
				shown = "-"
			} else {
				verdict = "pass"
				if !met {
					verdict = "SHORT"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, t.label(), t.pair(), shown, t.wanted(), verdict)
		}
	}
	return tw.Flush()
}

func hasScenario(results []Result, scenario string) bool {
	for _, r := range results {
		if r.Scenario == scenario {
			return true
		}
	}
	return false
}

// find returns the result of system in scenario, nil when it was not
// measured or failed.
func find(results []Result, scenario, system string) *Result {
	for i := range results {
		r := &results[i]
		if r.Scenario == scenario && r.System == system && r.Error == "" {
			return r
		}
	}
	return nil
}

// evaluate returns the target's figure as shown (a ratio, a difference or
// a value), whether it is met, and false when it could not be measured.
func (t Target) evaluate(scenario string, results []Result) (shown string, met, ok bool) {
	sys := find(results, scenario, t.System)
	if sys == nil {
		return "", false, false
	}
	a, okA := t.Metric.Value(*sys)
	if !okA {
		return "", false, false
	}
	if t.Absolute {
		switch {
		case t.Min > 0:
			return formatFigure(a), a >= t.Min, true
		case t.Equal:
			return formatFigure(a), a == t.Max, true
		}
		return formatFigure(a), a <= t.Max, true
	}
	base := find(results, scenario, t.Baseline)
	if base == nil {
		return "", false, false
	}
	bm := t.Metric
	if t.BaselineMetric != nil {
		bm = *t.BaselineMetric
	}
	b, okB := bm.Value(*base)
	if !okB {
		return "", false, false
	}
	if t.Plus > 0 {
		return fmt.Sprintf("%+.1f", a-b), a <= b+t.Plus, true
	}
	if b == 0 {
		return "", false, false
	}
	ratio := a / b
	return fmt.Sprintf("%.3f×", ratio), (t.Min <= 0 || ratio >= t.Min) && (t.Max <= 0 || ratio <= t.Max), true
}

// label names the compared metric(s).
func (t Target) label() string {
	if t.BaselineMetric != nil {
		return t.Metric.Label + " / " + t.BaselineMetric.Label
	}
	return t.Metric.Label
}

// pair names the compared systems.
func (t Target) pair() string {
	if t.Absolute {
		return t.System
	}
	return t.System + " / " + t.Baseline
}

func (t Target) wanted() string {
	switch {
	case t.Absolute && t.Min > 0:
		return fmt.Sprintf("≥ %g", t.Min)
	case t.Absolute && t.Equal:
		return fmt.Sprintf("= %g", t.Max)
	case t.Absolute:
		return fmt.Sprintf("≤ %g", t.Max)
	case t.Plus > 0:
		return fmt.Sprintf("≤ baseline %+g", t.Plus)
	case t.Min > 0 && t.Max > 0:
		return fmt.Sprintf("%g×–%g×", t.Min, t.Max)
	case t.Min > 0:
		return fmt.Sprintf("≥ %g×", t.Min)
	case t.Max > 0:
		return fmt.Sprintf("≤ %g×", t.Max)
	}
	return "-"
}

func optional(p *float64, decimals int) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', decimals, 64)
}

// optionalG prints small ratios with three significant digits (0.000123
// writes per message is a figure, not zero).
func optionalG(p *float64) string {
	if p == nil {
		return "-"
	}
	return formatFigure(*p)
}

// formatFigure prints v as an integer when it is one (counts), else with
// two decimals, or three significant digits below 1.
func formatFigure(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	if v >= 1 || v <= -1 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// humanCount prints a rate with a k/M suffix: 1234567 → "1.23M".
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
