package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
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

// writeTable prints the results as an aligned table, then every target
// whose systems were both measured, with its ratio and verdict.
func writeTable(w io.Writer, scenarios []*Scenario, results []Result) error {
	fmt.Fprintln(w, hostLine())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsystem\tpayload B\tmsgs/s\tMB/s\tp50 µs\tp99 µs\tp99.9 µs\tsvc p50 µs\tCPU µs/msg\twrites/msg\tlost\trejected\tload\t")
	for _, r := range results {
		lost := strconv.FormatInt(r.Lost, 10)
		if !r.Drained {
			lost += " (drain timeout)"
		}
		if r.Error != "" {
			lost += " ERROR: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%d\t%s\t\n",
			r.Scenario, r.System, r.PayloadBytes, humanCount(r.MsgsPerSec), r.MBPerSec,
			optional(r.P50us, 1), optional(r.P99us, 1), optional(r.P999us, 1), optional(r.ServiceP50us, 1),
			r.CPUusPerMsg, optionalG(r.WritesPerMsg), lost, r.Rejected, optional(r.LoadAvg, 1))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmetric\tsystem / baseline\tratio\twanted\tverdict")
	for _, sc := range scenarios {
		for _, t := range sc.Targets {
			ratio, ok := targetRatio(t, sc.Name, results)
			verdict, shown := "n/a (not measured)", "-"
			if ok {
				shown = fmt.Sprintf("%.3f×", ratio)
				verdict = "pass"
				if !t.met(ratio) {
					verdict = "SHORT"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s / %s\t%s\t%s\t%s\n", sc.Name, t.Metric.Label, t.System, t.Baseline, shown, t.wanted(), verdict)
		}
	}
	return tw.Flush()
}

// targetRatio returns t.System's metric over t.Baseline's in scenario.
func targetRatio(t Target, scenario string, results []Result) (float64, bool) {
	var sys, base *Result
	for i := range results {
		r := &results[i]
		if r.Scenario != scenario || r.Error != "" {
			continue
		}
		switch r.System {
		case t.System:
			sys = r
		case t.Baseline:
			base = r
		}
	}
	if sys == nil || base == nil {
		return 0, false
	}
	a, okA := t.Metric.Value(*sys)
	b, okB := t.Metric.Value(*base)
	if !okA || !okB || b == 0 {
		return 0, false
	}
	return a / b, true
}

func (t Target) met(ratio float64) bool {
	return (t.Min <= 0 || ratio >= t.Min) && (t.Max <= 0 || ratio <= t.Max)
}

func (t Target) wanted() string {
	switch {
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
	if *p >= 1 || *p == 0 {
		return strconv.FormatFloat(*p, 'f', 2, 64)
	}
	return strconv.FormatFloat(*p, 'g', 3, 64)
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
