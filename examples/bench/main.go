package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	opts Options
	// durationSet: -duration was given, so it overrides a scenario's own
	// Duration.
	durationSet bool
	scenarios   []*Scenario
	systems     string // -systems, checked
	json        bool
	chart       string
	metricsAddr string
	cpuProfile  string
	execTrace   string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	scenario := fs.String("scenario", "", "scenario to run: "+scenarioNames()+", a comma-separated list, or all")
	fs.StringVar(&c.systems, "systems", "", "comma-separated systems to compare (a scenario skips those it cannot run), or all; "+
		"default: each scenario's own list. Systems: "+systemNames())
	fs.DurationVar(&c.opts.Duration, "duration", 5*time.Second, "measured interval per run (saturate: 10s unless given)")
	fs.DurationVar(&c.opts.Warmup, "warmup", time.Second, "load before measuring, per run (and before hol's idle measurement)")
	fs.DurationVar(&c.opts.Drain, "drain", 10*time.Second, "longest wait, after stopping the load, for every message to reach an outcome")
	fs.IntVar(&c.opts.Payload, "payload", 128, "payload bytes for small, reqresp, latency, coalesce, overload and hol's small messages")
	fs.IntVar(&c.opts.Repeat, "repeat", 3, "runs per (scenario, system); the report shows medians")
	fs.IntVar(&c.opts.Rate, "rate", 0, "messages per second of the open-loop scenarios; 0: each scenario's default (latency 2000, hol 2000, coalesce 100000 in total)")
	fs.IntVar(&c.opts.Senders, "senders", 0, "load goroutines; 0: each scenario's default (small 8, coalesce 64, overload 4, saturate 4 per node)")
	fs.IntVar(&c.opts.LargeSize, "large-size", defaultLargeSize, "bytes of a large message (large, hol; large-mixed sends 1/16×, 1× and 4×)")
	fs.Int64Var(&c.opts.FileSize, "file-size", defaultFileSize, "bytes of the file the file scenario sends (a temp file in $TMPDIR)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per (scenario, system) instead of a table")
	fs.StringVar(&c.chart, "chart", "", "also draw a bar chart to this .svg or .png file")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (both ends and the harness) to this file, for go tool pprof")
	fs.StringVar(&c.execTrace, "trace", "", "write a runtime execution trace of the whole run to this file, for go tool trace and tracestat (about 1 MB a second of the small scenario; busier runs write more)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve the internode systems' OpenTelemetry metrics as Prometheus text at http://ADDR/metrics while the bench runs (e.g. 127.0.0.1:9464)")
	fs.IntVar(&c.opts.Nodes, "nodes", 0, "nodes of the saturate and idle scenarios; 0: each scenario's default (saturate 4, idle 16)")
	limit := func(v *int64, name, what string) {
		fs.Var((*byteSize)(v), name, what+" of every internode node in saturate and idle, in bytes or with a KiB, MiB or GiB suffix; 0: the transport's default")
	}
	limit(&c.opts.Limits.OutNode, "out-node", "Outbound.Node")
	limit(&c.opts.Limits.InNode, "in-node", "Inbound.Node")
	limit(&c.opts.Limits.PerPeer, "per-peer", "Outbound.PerPeer and Inbound.PerPeer")
	limit(&c.opts.Limits.PerConn, "per-conn", "Outbound.PerConnection and Inbound.PerConnection")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	fs.Visit(func(f *flag.Flag) { c.durationSet = c.durationSet || f.Name == "duration" })
	if *scenario == "" {
		return c, fmt.Errorf("-scenario is required (%s, all)", scenarioNames())
	}
	if c.opts.Duration <= 0 || c.opts.Warmup < 0 || c.opts.Drain <= 0 || c.opts.Repeat < 1 || c.opts.Rate < 0 ||
		c.opts.Senders < 0 || c.opts.Payload < 0 || c.opts.LargeSize < 16 || c.opts.FileSize < 1 || c.opts.Nodes < 0 {
		return c, errors.New("need -duration > 0, -warmup ≥ 0, -drain > 0, -repeat ≥ 1, -rate ≥ 0, -senders ≥ 0, -payload ≥ 0, -large-size ≥ 16, -file-size ≥ 1, -nodes ≥ 0")
	}
	var err error
	if c.scenarios, err = selectScenarios(*scenario); err != nil {
		return c, err
	}
	return c, checkSystems(c.systems)
}

// run executes the command line: for each scenario, repeats alternate over
// the systems (for r in repeats: for s in systems) so that drift in the
// machine hits every system alike.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == childArg {
		return runChild(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == compressPeerArg {
		return runCompressPeer(args[1:], os.Stdin, stdout)
	}
	if len(args) > 0 && args[0] == linkNodeArg {
		return runLinkNode(args[1:], os.Stdin, stdout)
	}
	if len(args) > 0 && args[0] == linkCommand {
		return runLink(args[1:], stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.metricsAddr != "" {
		m, err := startMetrics(c.metricsAddr, stderr)
		if err != nil {
			return err
		}
		defer m.close()
	}
	defer closeSourceFiles()
	for _, rec := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{
		{c.cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{c.execTrace, trace.Start, trace.Stop},
	} {
		if rec.path == "" {
			continue
		}
		f, err := os.Create(rec.path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := rec.start(f); err != nil {
			return err
		}
		defer rec.stop()
	}
	var all []Result
	var ran []*Scenario
	for _, sc := range c.scenarios {
		if sc.Unavailable != nil {
			if err := sc.Unavailable(); err != nil {
				fmt.Fprintf(stderr, "%s: skipped: %v\n", sc.Name, err)
				continue
			}
		}
		systems, skipped, err := systemsFor(sc, c.systems)
		if err != nil {
			return err
		}
		if len(skipped) > 0 {
			fmt.Fprintf(stderr, "%s: skipping %s (not supported by this scenario)\n", sc.Name, strings.Join(skipped, ", "))
		}
		if len(systems) == 0 {
			continue
		}
		ran = append(ran, sc)
		opts := c.opts
		if sc.Duration > 0 && !c.durationSet {
			opts.Duration = sc.Duration
		}
		runs := make(map[string][]Result)
		for rep := range c.opts.Repeat {
			for _, sys := range systems {
				fmt.Fprintf(stderr, "%s / %s: repeat %d of %d\n", sc.Name, sys.Name, rep+1, c.opts.Repeat)
				var res Result
				var err error
				if sc.Measure != nil {
					res, err = measureInChild(sc, sys.Name, opts, stderr)
				} else {
					res, err = execute(sc, sys, opts)
				}
				if err != nil {
					res.Scenario, res.System, res.Error = sc.Name, sys.Name, err.Error()
					fmt.Fprintf(stderr, "%s / %s: %v\n", sc.Name, sys.Name, err)
				}
				runs[sys.Name] = append(runs[sys.Name], res)
			}
		}
		var results []Result
		for _, sys := range systems {
			results = append(results, median(runs[sys.Name]))
		}
		if c.json {
			if err := writeJSON(stdout, results); err != nil {
				return err
			}
		}
		all = append(all, results...)
	}
	if len(ran) == 0 {
		return errors.New("no scenario supports the systems selected")
	}
	if !c.json {
		if err := writeTable(stdout, ran, all); err != nil {
			return err
		}
	}
	if c.chart != "" {
		return writeChart(c.chart, ran, all)
	}
	return nil
}
