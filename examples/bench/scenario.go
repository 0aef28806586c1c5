package main

import (
	"fmt"
	"strings"
)

// Scenario is one workload. The harness (see execute) starts the system,
// calls Load, lets it warm up, measures for the configured duration, stops
// the load and drains; Load only has to start load goroutines with r.Go
// that return promptly once r.Stopping() reports true.
type Scenario struct {
	Name string
	Doc  string
	// PayloadSize returns the payload of each message, in bytes.
	PayloadSize func(Options) int
	// Load starts the scenario's load generators. payload is shared by all
	// of them and never modified.
	Load func(r *Run, payload []byte)
	// Targets are the ratios the report checks (reported, not asserted).
	Targets []Target
	// Chart lists the metrics drawn for this scenario, one bar group each.
	Chart []Metric
}

// Metric is one figure of a Result.
type Metric struct {
	Key   string // JSON field name
	Label string // for tables and charts
	// Value returns the metric, or false when the result has none (say,
	// latency in a one-way scenario).
	Value func(Result) (float64, bool)
}

var (
	metricMsgsPerSec = Metric{"msgs_per_sec", "msgs/s", func(r Result) (float64, bool) { return r.MsgsPerSec, true }}
	metricMBPerSec   = Metric{"mb_per_sec", "MB/s", func(r Result) (float64, bool) { return r.MBPerSec, true }}
	metricP50        = Metric{"p50_us", "p50 µs", func(r Result) (float64, bool) { return deref(r.P50us) }}
	metricP99        = Metric{"p99_us", "p99 µs", func(r Result) (float64, bool) { return deref(r.P99us) }}
	metricP999       = Metric{"p999_us", "p99.9 µs", func(r Result) (float64, bool) { return deref(r.P999us) }}
	metricServiceP50 = Metric{"service_p50_us", "svc p50 µs", func(r Result) (float64, bool) { return deref(r.ServiceP50us) }}
)

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// Target says that System's Metric divided by Baseline's must be at least
// Min (when Min > 0) and at most Max (when Max > 0).
type Target struct {
	Metric   Metric
	System   string
	Baseline string
	Min, Max float64
}

// scenarioRegistry lists every scenario in run order. To add one, write a
// scenario_NAME.go defining a *Scenario and add it here.
var scenarioRegistry = []*Scenario{
	scenarioSmall,
	scenarioReqResp,
	scenarioLatency,
	scenarioLarge,
}

// selectScenarios resolves -scenario: a name, a comma-separated list, or
// "all".
func selectScenarios(list string) ([]*Scenario, error) {
	if list == "all" {
		return scenarioRegistry, nil
	}
	var out []*Scenario
	for _, name := range strings.Split(list, ",") {
		sc := findScenario(strings.TrimSpace(name))
		if sc == nil {
			return nil, fmt.Errorf("unknown scenario %q (have %s, all)", name, scenarioNames())
		}
		out = append(out, sc)
	}
	return out, nil
}

func findScenario(name string) *Scenario {
	for _, sc := range scenarioRegistry {
		if sc.Name == name {
			return sc
		}
	}
	return nil
}

func scenarioNames() string {
	names := make([]string, len(scenarioRegistry))
	for i, sc := range scenarioRegistry {
		names[i] = sc.Name
	}
	return strings.Join(names, ", ")
}
