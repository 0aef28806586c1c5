package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/internode/internode/transport"
)

// Scenario is one workload. The harness (see execute) starts the system,
// calls Load, lets it warm up, measures for the configured duration, stops
// the load and drains; Load only has to start load goroutines with r.Go
// that return promptly once r.Stopping() reports true.
type Scenario struct {
	Name string
	Doc  string
	// OptIn leaves the scenario out of -scenario all: it runs only when
	// named.
	OptIn bool
	// Unavailable, if set, says why the scenario cannot run on this
	// machine (compress: not root); it is then skipped with that message.
	Unavailable func() error
	// Duration, if set, is the measured interval when -duration is not
	// given.
	Duration time.Duration
	// Systems are the systems the scenario runs by default (without
	// -systems), in registry order (meshRegistry's for a scenario with
	// Measure).
	Systems []string
	// Supports reports whether the scenario can run sys; nil means every
	// messaging system (not the file-only ones). -systems names a system
	// a scenario does not support: it is skipped, with a note.
	Supports func(sys System) bool
	// Tune, if set, adjusts the transport config of internode systems
	// before Start (after the system's own tuning): overload's small
	// limits, large-mixed's room for its largest message.
	Tune func(*transport.Config, Options)
	// PayloadSize returns the payload of each message, in bytes.
	PayloadSize func(Options) int
	// NoPayload: Load gets a nil payload instead of one of PayloadSize
	// bytes (the file scenario sends a file).
	NoPayload bool
	// EchoDelay is how long the receiver's handler takes per request
	// (Hooks.EchoDelay).
	EchoDelay time.Duration
	// Idle, if set, starts load that first runs alone: the harness warms
	// it up and measures it for the configured duration (recorders from
	// NewIdleRecorder), then calls Load, which adds more. Its load
	// goroutines keep running until the run stops.
	Idle func(r *Run, payload []byte)
	// Load starts the scenario's load generators. payload is shared by all
	// of them and never modified.
	Load func(r *Run, payload []byte)
	// Measure, if set, replaces the harness and Load: each run is a fresh
	// child process of this command (see child.go) in which Measure
	// brings up system, a mesh of meshRegistry, loads and measures it and
	// returns the result. For scenarios that measure the whole process
	// (resident set, heap): saturate and idle.
	Measure func(system string, opts Options) (Result, error)
	// Targets are the comparisons the report checks (reported, not
	// asserted).
	Targets []Target
	// Columns are figures of this scenario only, printed in a table of
	// their own under the main one.
	Columns []Metric
	// Chart lists the metrics drawn for this scenario, one bar group each;
	// MoreCharts adds panels (metrics in other units).
	Chart      []Metric
	MoreCharts [][]Metric
}

// Metric is one figure of a Result.
type Metric struct {
	Key   string // JSON field name
	Label string // for tables and charts
	// Value returns the metric, or false when the result has none (say,
	// latency in a one-way scenario).
	Value func(Result) (float64, bool)
	// Lower says lower is better (latency, cost).
	Lower bool
}

var (
	metricMsgsPerSec = Metric{Key: "msgs_per_sec", Label: "msgs/s", Value: func(r Result) (float64, bool) { return r.MsgsPerSec, true }}
	metricMBPerSec   = Metric{Key: "mb_per_sec", Label: "MB/s", Value: func(r Result) (float64, bool) { return r.MBPerSec, true }}
	metricP50        = Metric{Key: "p50_us", Label: "p50 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.P50us) }}
	metricP99        = Metric{Key: "p99_us", Label: "p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.P99us) }}
	metricP999       = Metric{Key: "p999_us", Label: "p99.9 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.P999us) }}
	metricServiceP50 = Metric{Key: "service_p50_us", Label: "svc p50 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.ServiceP50us) }}
	metricP50Idle    = Metric{Key: "p50_idle_us", Label: "idle p50 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.P50IdleUs) }}
	metricP99Idle    = Metric{Key: "p99_idle_us", Label: "idle p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.P99IdleUs) }}
	metricServiceP99 = Metric{Key: "service_p99_us", Label: "svc p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.ServiceP99us) }}
	metricSvcP99Idle = Metric{Key: "service_p99_idle_us", Label: "idle svc p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.ServiceP99IdleUs) }}
	metricStartP99   = Metric{Key: "start_p99_us", Label: "start p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.StartP99us) }}
	metricStartIdle  = Metric{Key: "start_p99_idle_us", Label: "idle start p99 µs", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.StartP99IdleUs) }}
	metricCPUPerMsg  = Metric{Key: "cpu_us_per_msg", Label: "CPU µs/msg", Lower: true, Value: func(r Result) (float64, bool) { return r.CPUusPerMsg, r.CPUusPerMsg > 0 }}
	metricWritesMsg  = Metric{Key: "writes_per_msg", Label: "writes/msg", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.WritesPerMsg) }}
	metricVecWrites  = Metric{Key: "vectored_writes_per_msg", Label: "vectored writes/msg", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.VectoredWritesPerMsg) }}
	metricCPUPerGB   = Metric{Key: "cpu_s_per_gb", Label: "CPU s/GB", Lower: true, Value: func(r Result) (float64, bool) { return deref(r.CPUsPerGB) }}
	metricPeakIn     = Metric{Key: "peak_inbound_bytes", Label: "peak inbound MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.PeakInboundBytes) }}
	metricInLimit    = Metric{Key: "inbound_limit_bytes", Label: "inbound limit MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.InboundLimitBytes) }}
	metricPeakHeap   = Metric{Key: "peak_heap_bytes", Label: "peak heap MiB", Lower: true, Value: func(r Result) (float64, bool) { return mib(r.PeakHeapBytes) }}
	metricOverloaded = Metric{Key: "overloaded", Label: "overloaded", Value: func(r Result) (float64, bool) {
		if r.Overloaded == nil {
			return 0, false
		}
		return float64(*r.Overloaded), true
	}}
	metricLost = Metric{Key: "lost", Label: "lost", Lower: true, Value: func(r Result) (float64, bool) { return float64(r.Lost), true }}
)

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// mib shows a byte count in MiB (the JSON field stays in bytes).
func mib(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p / (1 << 20), true
}

// Target is one comparison the report checks.
//
// By default it is a ratio: System's Metric divided by Baseline's
// BaselineMetric (Metric when nil) must be at least Min (when Min > 0) and
// at most Max (when Max > 0). With Plus > 0 it is a difference instead:
// System's figure must be at most Baseline's plus Plus. With Absolute, there
// is no baseline: System's figure must be at most Max (0 included), or, when
// Min > 0, at least Min, or, with Equal, exactly Max (lost = 0: below zero
// is messages counted twice, which may hide as many lost).
type Target struct {
	Metric         Metric
	System         string
	Baseline       string
	BaselineMetric *Metric
	Min, Max       float64
	Plus           float64
	Absolute       bool
	Equal          bool
}

// scenarioRegistry lists every scenario in run order. To add one, write a
// scenario_NAME.go defining a *Scenario and add it here.
var scenarioRegistry = []*Scenario{
	scenarioSmall,
	scenarioReqResp,
	scenarioReqRespSlow,
	scenarioLatency,
	scenarioLarge,
	scenarioLargeMixed,
	scenarioCoalesce,
	scenarioOverload,
	scenarioHOL,
	scenarioFile,
	scenarioSaturate,
	scenarioIdle,
	scenarioCompress,
}

// supports reports whether sc can run the system entry makes. A scenario
// with Measure runs meshes (see meshSystems), no System.
func (sc *Scenario) supports(entry systemEntry) bool {
	if sc.Measure != nil {
		return false
	}
	sys := entry.New() // constructors only allocate
	if sc.Supports != nil {
		return sc.Supports(sys)
	}
	_, fileOnly := sys.(fileOnlySystem)
	return !fileOnly
}

// isInternode is Supports for scenarios that need internode's own
// counters or config.
func isInternode(sys System) bool {
	_, ok := sys.(*internodeSystem)
	return ok
}

// selectScenarios resolves -scenario: a name, a comma-separated list, or
// "all" (every scenario but the opt-in ones).
func selectScenarios(list string) ([]*Scenario, error) {
	if list == "all" {
		var out []*Scenario
		for _, sc := range scenarioRegistry {
			if !sc.OptIn {
				out = append(out, sc)
			}
		}
		return out, nil
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
		if sc.OptIn {
			names[i] += " (opt-in)"
		}
	}
	return strings.Join(names, ", ")
}
