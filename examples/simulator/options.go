package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
)

// options are the simulator's flags.
type options struct {
	mode     string // "cluster" (in one process) or "node"
	nodes    int
	duration time.Duration
	rate     int // writes per second per node
	// valueSize is the typical value size, bytes; see valueSizes.
	valueSize int
	strategy  string
	timeout   time.Duration // per replica request
	restart   bool
	slow      time.Duration // the slow node's delay per write; 0: no slow node
	// stuckAfter is how long a pair lane may have work waiting with
	// nothing getting through before it counts as stuck.
	stuckAfter time.Duration
	seed       uint64
	json       bool
	report     string // HTML report file
	wide       bool   // print progress and the text report in their wide form
	metrics    string // -metrics-addr
	tls        bool
	tlsDir     string
	verbose    bool

	// Node mode.
	id     string
	listen string
	gossip string
	join   string
}

// parseOptions parses the command line; the error of a bad flag has
// already been reported to output, with the usage.
func parseOptions(args []string, output io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(output, `Usage: simulator [flags]

Runs a mixed gossip + replication workload over internode transports and
reports what happened to every message. With no flags: 5 nodes in this
process on loopback for 20 s, with one node restarted (its data lost, then
pulled back from its peers) and one node slow.

Node mode runs one node of the same workload; start several, anywhere:
  simulator -mode node -id n1 -listen 127.0.0.1:7001 -gossip 127.0.0.1:7946
  simulator -mode node -id n2 -listen 127.0.0.1:7002 -gossip 127.0.0.1:7947 -join 127.0.0.1:7946

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.mode, "mode", "cluster", `"cluster": every node in this process; "node": one node, discovering the others through memberlist`)
	fs.IntVar(&o.nodes, "nodes", 5, "nodes to run in cluster mode (2 to 64)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the workload runs")
	fs.IntVar(&o.rate, "rate", 200, "replicated writes per second started by each node (0: gossip only)")
	fs.IntVar(&o.valueSize, "value-size", 1024, "typical value size in bytes; 2% of values are between 96 KiB and 1 MiB, so the large lane is used")
	fs.StringVar(&o.strategy, "strategy", coalescing.DefaultName, "coalescing strategy of the small and large lanes: "+strings.Join(coalescing.Names(), ", "))
	fs.DurationVar(&o.timeout, "timeout", time.Second, "timeout of each replica request")
	fs.BoolVar(&o.restart, "restart", true, "stop one node (the last) a third of the way through and restart it with its data lost: it bootstraps from the other nodes but the slow one with SendFile (cluster mode, 3+ nodes)")
	fs.DurationVar(&o.slow, "slow", time.Millisecond, "give one node (n2) a slow disk: each write it stores takes this long plus 1 ms per 64 KiB, one at a time, and the disk stalls once, so back-pressure shows; 0: no slow node (cluster mode, 3+ nodes)")
	fs.DurationVar(&o.stuckAfter, "stuck-after", defaultStuckAfter, "count a pair lane (sender, receiver, lane) as stuck when messages wait on it and none gets through, or every request on it fails, for longer than this; at least 1s, the sampling interval")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the workload's random choices")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON on stdout (progress goes to stderr)")
	fs.BoolVar(&o.wide, "wide", false, "print the progress lines and the text report in their wide form, every column spelt out and no line wrapped (default: fit 120 columns)")
	fs.StringVar(&o.report, "report", "", "also write the report as a self-contained HTML page to this file")
	fs.StringVar(&o.metrics, "metrics-addr", "", "serve the transports' OpenTelemetry metrics for Prometheus at http://ADDR/metrics while running, each series labelled with its node")
	fs.BoolVar(&o.tls, "tls", false, "run every connection over mutual TLS 1.3, with certificates from a CA made for the run")
	fs.StringVar(&o.tlsDir, "tls-dir", "", "node mode with -tls: a directory holding the cluster's CA (ca.pem, ca-key.pem), created by the first node if absent; give every node the same")
	fs.BoolVar(&o.verbose, "v", false, "log the transports' connection events to stderr")
	fs.StringVar(&o.id, "id", "", "node mode: this node's ID")
	fs.StringVar(&o.listen, "listen", "", "node mode: the transport's listen address, host:port")
	fs.StringVar(&o.gossip, "gossip", "", "node mode: memberlist's bind address, ip:port (default 0.0.0.0:7946)")
	fs.StringVar(&o.join, "join", "", "node mode: comma-separated gossip addresses of nodes to join through; empty starts a cluster")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	return o, o.validate()
}

// defaultStuckAfter is -stuck-after's default. The longest a live pair
// lane goes without progress in a healthy run is the slow node's disk
// stall, at most 3 s (planFaults), which sampling once a second can stretch
// by up to 1 s; replica requests fail within -timeout (1 s). Twice that
// worst case leaves room for a loaded machine, and a lane wedged for good
// is still found within seconds of a 20 s run.
const defaultStuckAfter = 8 * time.Second

// errUsage marks errors in the command line: the exit status is 2.
var errUsage = errors.New("usage")

func usageError(msg string) error { return fmt.Errorf("%w: %s", errUsage, msg) }

func (o options) validate() error {
	switch {
	case o.mode != "cluster" && o.mode != "node":
		return usageError(`-mode must be "cluster" or "node"`)
	case o.mode == "cluster" && (o.nodes < 2 || o.nodes > 64):
		return usageError("-nodes must be between 2 and 64")
	case o.duration <= 0:
		return usageError("-duration must be positive")
	case o.rate < 0 || o.rate > 100_000:
		return usageError("-rate must be between 0 and 100000")
	case o.valueSize < 1 || o.valueSize > maxValueSize:
		return usageError("-value-size must be between 1 and 4194304 (4 MiB)")
	case o.timeout <= 0:
		return usageError("-timeout must be positive")
	case o.slow < 0:
		return usageError("-slow must not be negative")
	case o.stuckAfter < time.Second:
		return usageError("-stuck-after must be at least 1s")
	case o.mode == "node" && (o.id == "" || o.listen == ""):
		return usageError("node mode needs -id and -listen")
	case o.mode == "node" && o.tls && o.tlsDir == "":
		return usageError("node mode with -tls needs -tls-dir, shared by the nodes, for their CA")
	}
	if _, err := coalescing.ByName(o.strategy, 0); err != nil {
		return usageError(err.Error())
	}
	return nil
}

// coalescingFor returns the Config.Lanes.Coalescing of -strategy: the named
// strategy on the small and large lanes, Disabled on the urgent lane
// (control traffic never waits, as in the transport's default).
func (o options) coalescingFor() func(routing.Lane) coalescing.Strategy {
	factory, err := coalescing.ByName(o.strategy, 0)
	if err != nil {
		panic(err) // validate checked it
	}
	return func(lane routing.Lane) coalescing.Strategy {
		if lane == routing.Urgent {
			return coalescing.NewDisabled()
		}
		return factory()
	}
}

// faultsOn reports whether the cluster is big enough for faults: with a
// node down and one slow, a quorum of 2 of 3 must still be reachable.
func (o options) faultsOn() bool { return o.mode == "cluster" && o.nodes >= 3 }
