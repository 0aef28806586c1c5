package main

import (
	"flag"
	"fmt"
	"io"
	"os"
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
	opts      Options
	scenarios []*Scenario
	systems   []systemEntry
	json      bool
	chart     string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	scenario := fs.String("scenario", "", "scenario to run: "+scenarioNames()+", a comma-separated list, or all")
	systems := fs.String("systems", "all", "comma-separated systems to compare: "+systemNames())
	fs.DurationVar(&c.opts.Duration, "duration", 5*time.Second, "measured interval per run")
	fs.DurationVar(&c.opts.Warmup, "warmup", time.Second, "load before measuring, per run")
	fs.DurationVar(&c.opts.Drain, "drain", 10*time.Second, "longest wait, after stopping the load, for every message to reach an outcome")
	fs.IntVar(&c.opts.Payload, "payload", 128, "payload bytes for small, reqresp and latency")
	fs.IntVar(&c.opts.Repeat, "repeat", 3, "runs per (scenario, system); the report shows medians")
	fs.IntVar(&c.opts.Rate, "rate", 2000, "requests per second for the open-loop latency scenario")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per (scenario, system) instead of a table")
	fs.StringVar(&c.chart, "chart", "", "also draw a bar chart to this .svg or .png file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *scenario == "" {
		return c, fmt.Errorf("-scenario is required (%s, all)", scenarioNames())
	}
	if c.opts.Duration <= 0 || c.opts.Warmup < 0 || c.opts.Drain <= 0 || c.opts.Repeat < 1 || c.opts.Rate < 1 || c.opts.Payload < 0 {
		return c, fmt.Errorf("need -duration > 0, -warmup ≥ 0, -drain > 0, -repeat ≥ 1, -rate ≥ 1, -payload ≥ 0")
	}
	var err error
	if c.scenarios, err = selectScenarios(*scenario); err != nil {
		return c, err
	}
	c.systems, err = selectSystems(*systems)
	return c, err
}

// run executes the command line: for each scenario, repeats alternate over
// the systems (for r in repeats: for s in systems) so that drift in the
// machine hits every system alike.
func run(args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var all []Result
	for _, sc := range c.scenarios {
		runs := make(map[string][]Result)
		for rep := range c.opts.Repeat {
			for _, sys := range c.systems {
				fmt.Fprintf(stderr, "%s / %s: repeat %d of %d\n", sc.Name, sys.Name, rep+1, c.opts.Repeat)
				res, err := execute(sc, sys, c.opts)
				if err != nil {
					res.Scenario, res.System, res.Error = sc.Name, sys.Name, err.Error()
					fmt.Fprintf(stderr, "%s / %s: %v\n", sc.Name, sys.Name, err)
				}
				runs[sys.Name] = append(runs[sys.Name], res)
			}
		}
		var results []Result
		for _, sys := range c.systems {
			results = append(results, median(runs[sys.Name]))
		}
		if c.json {
			if err := writeJSON(stdout, results); err != nil {
				return err
			}
		}
		all = append(all, results...)
	}
	if !c.json {
		if err := writeTable(stdout, c.scenarios, all); err != nil {
			return err
		}
	}
	if c.chart != "" {
		return writeChart(c.chart, c.scenarios, all)
	}
	return nil
}
