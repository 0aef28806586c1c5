// Command simulator runs internode nodes under a database's workload —
// gossip and quorum-replicated writes — with faults, shows its progress
// every second and reports what happened to every message.
//
//	go run ./examples/simulator                  # 5 nodes in this process, 20 s
//	go run ./examples/simulator -duration 10s -json
//	go run ./examples/simulator -report run.html # charts, self-contained
//	go run ./examples/simulator -tls -metrics-addr 127.0.0.1:9090
//
// Each node gossips heartbeats every 100 ms to 3 random peers on the urgent
// lane (examples/gossip) and coordinates -rate writes per second, each
// replicated to 3 nodes with a quorum of 2 through transport.Request
// (examples/replication); 2% of the values are above 64 KiB and take the
// large lane. On the way, n2's disk is slow and stalls for a while, and the
// last node is stopped, loses its data, restarts and bootstraps from two
// peers with SendFile (-slow 0 and -restart=false turn them off).
//
// The report ends with one line,
//
//	summary: nodes=N sent=S delivered=D failed=F lost=L
//
// counting the replica requests and gossip digests the nodes sent: delivered
// are requests acknowledged and digests written to their socket, failed
// those that ended in an error, and lost those with no outcome at all. lost
// must be 0; the command exits 1 otherwise. Requests are counted by the
// workload itself, before each call and after it returns; digests by the
// transport's Stats (written) and Config.OnDropped (dropped after Send
// accepted them).
//
// With -mode node it runs one node of the same workload, discovering the
// others through cluster/memberlist, and prints that node's report:
//
//	simulator -mode node -id n1 -listen 127.0.0.1:7001 -gossip 127.0.0.1:7946
//	simulator -mode node -id n2 -listen 127.0.0.1:7002 -gossip 127.0.0.1:7947 -join 127.0.0.1:7946
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command and returns its exit status: 0, 1 on failure
// or lost messages, 2 for a bad command line.
func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "simulator:", err)
		return 2
	case err != nil:
		return 2 // the flag package has printed the error and the usage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := run(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "simulator:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	if r.Summary.Lost != 0 {
		fmt.Fprintf(stderr, "simulator: %d messages have no outcome\n", r.Summary.Lost)
		return 1
	}
	return 0
}

// run runs the simulation o describes and writes its report.
func run(ctx context.Context, o options, stdout, stderr io.Writer) (*report, error) {
	progressOut := stdout
	if o.json {
		progressOut = stderr // stdout holds the JSON document only
	}
	var r *report
	var err error
	if o.mode == "node" {
		r, err = runNode(ctx, o, progressOut, stderr)
	} else {
		r, err = runCluster(ctx, o, progressOut, stderr)
	}
	if err != nil {
		return nil, err
	}
	if o.report != "" {
		if err := writeHTMLFile(o.report, r); err != nil {
			return r, err
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return r, err
		}
		fmt.Fprintln(stderr, r.SummaryLine)
		return r, nil
	}
	r.writeText(stdout)
	return r, nil
}
