// Command simulator runs internode nodes under a database's workload —
// gossip and quorum-replicated writes — with faults, shows its progress
// every second and reports what happened to every message.
//
//	go run ./examples/simulator                  # 5 nodes in this process, 20 s
//	go run ./examples/simulator -duration 10s -json
//	go run ./examples/simulator -report run.html # charts, self-contained
//	go run ./examples/simulator -wide            # progress and report unwrapped
//	go run ./examples/simulator -tls -metrics-addr 127.0.0.1:9090
//
// Each node gossips heartbeats every 100 ms to 3 random peers on the urgent
// lane (examples/gossip) and coordinates -rate writes per second, each
// replicated to 3 nodes with a quorum of 2 through transport.Request
// (examples/replication); 2% of the values are above 64 KiB and take the
// large lane. On the way, n2's disk is slow and stalls for a while, and the
// last node is stopped, loses its data, restarts and bootstraps from the
// other nodes but n2 with SendFile (-slow 0 and -restart=false turn them off).
//
// What it prints for people (a progress line a second, the events, the
// report) fits 120 columns; -wide prints the wide form, every column of
// the progress line spelt out and no line wrapped. The report ends with one
// line, never wrapped,
//
//	summary: nodes=N writes=W writes_failed=X sent=S delivered=D failed=F lost=L stuck=K
//
// writes counts the database writes the nodes coordinated, writes_failed
// those that failed (one that failed for want of replicas, unavailable,
// sent no message). The rest counts the replica requests and gossip
// digests the nodes sent: delivered are requests acknowledged and digests
// written to their socket, failed those that ended in an error, and lost
// those with no outcome at all (and those counted in two, which must not
// cancel them).
// Requests are counted by the workload itself, before each call and after
// it returns; digests by the transport's Stats (written) and
// Config.OnDropped (dropped after Send accepted them).
//
// A request whose message the transport wrote and never delivered, or
// whose response it never sent, ends timed out: an outcome in those
// counts. So lost also counts, from both ends of every pair lane once the
// nodes have closed (the report's "in flight:" line), the messages the
// sender wrote (Stats: MessagesSent) that the receiver never counted
// (MessagesReceived, DroppedInbound, RemoteDropped) on a pair lane whose
// connections never broke (no restart, each end connected once: a
// connection that breaks may take what was on the wire with it), those
// counted arriving more often than sent, and the replica requests a
// handler ran that were never answered (ResponsesSent, or a response
// dropped: Config.OnDropped).
//
// Nothing lost is not enough: a connection can hold its messages and move
// none of them. stuck counts the pair lanes — a sender, a receiver and a
// lane, urgent, small or large; 60 with 5 nodes — that were stuck at any
// time during the run. Every second, for each pair lane:
//
//   - messages are waiting while the sender holds some for the receiver on
//     that lane (Stats: PendingMessages or PendingBytes) or has written some
//     (MessagesSent) that have not arrived; they get through when the
//     receiver's count of messages arrived from the sender on that lane
//     grows (MessagesReceived, DroppedInbound, RemoteDropped);
//   - requests are failing while every replica request from the sender to
//     the receiver on that lane fails (times out, overloaded, ...): for as
//     long as from the first failure after an acknowledgement to the
//     latest, until one is acknowledged or none fails for -stuck-after;
//   - the pair lane is stuck while either has lasted longer than
//     -stuck-after (default 8 s: twice the longest a live pair lane goes
//     without progress under the faults, n2's disk stall of at most 3 s
//     plus a second of sampling).
//
// A pair lane whose sender or receiver is down, or (re)started less than
// 3 s ago, is not judged, and its clock starts again when it is: a node
// being stopped is down, not stuck. The writes stop at -duration, but the
// gossip goes on, each node sends every peer five probes a second on the
// small and the large lane, and the pair lanes are still judged until
// each has been judged long enough to be found stuck (at most the grace
// plus -stuck-after) and each has moved: a lane wedged late in the run shows
// too, and one that does not move after the writes stop fails the run
// (the report names it). The report lists the stuck pair lanes, when each
// first stalled, its longest stall, and how long the stall still going on
// at the end had lasted. lost and stuck must be 0 and every pair lane must
// move at the end; the command exits 1 otherwise, naming the pair lanes on
// stderr.
//
// With -mode node it runs one node of the same workload, discovering the
// others through cluster/memberlist, and prints that node's report:
//
//	simulator -mode node -id n1 -listen 127.0.0.1:7001 -gossip 127.0.0.1:7946
//	simulator -mode node -id n2 -listen 127.0.0.1:7002 -gossip 127.0.0.1:7947 -join 127.0.0.1:7946
//
// A node cannot see its peers' counters, so it judges its own outbound
// pair lanes from its side: messages are waiting while it holds some for
// the peer, and get through when it writes them (MessagesSent); requests
// as above. It finds a lane whose writer does not write (a peer that stops
// reading fills the socket, then the queue), but not messages written and
// never read while its queue stays empty. A peer is down while memberlist
// does not list it, and starting for 3 s after it does again.
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
	"strings"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command and returns its exit status: 0, 1 on failure,
// lost messages or stuck pair lanes, 2 for a bad command line.
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
	return verdict(r, stderr)
}

// verdict returns the exit status of a run that reported r: 1, with why on
// stderr, if messages were lost or pair lanes stuck, else 0.
func verdict(r *report, stderr io.Writer) int {
	status := 0
	if r.Summary.Lost != 0 {
		fmt.Fprintf(stderr, "simulator: %d messages have no outcome\n", r.Summary.Lost)
		status = 1
	}
	if r.Summary.Stuck != 0 {
		fmt.Fprintf(stderr, "simulator: %d pair lanes stuck for over %s: %s\n",
			r.Summary.Stuck, seconds(r.Stuck.AfterS), r.Stuck.names())
		status = 1
	}
	if r.Stuck != nil && len(r.Stuck.StillAtEnd) > 0 {
		fmt.Fprintf(stderr, "simulator: %d pair lanes did not move after the writes stopped: %s\n",
			len(r.Stuck.StillAtEnd), strings.Join(r.Stuck.StillAtEnd, ", "))
		status = 1
	}
	return status
}

// run runs the simulation o describes and writes its report.
func run(ctx context.Context, o options, stdout, stderr io.Writer) (*report, error) {
	// What is printed for people fits consoleWidth, unless -wide; the JSON
	// document is printed as it is.
	text := io.Writer(stdout)
	if !o.wide {
		text = newWrapWriter(stdout, consoleWidth)
	}
	progressOut := text
	if o.json {
		progressOut = stderr // stdout holds the JSON document only
		if !o.wide {
			progressOut = newWrapWriter(stderr, consoleWidth)
		}
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
	r.writeText(text, o.wide)
	return r, nil
}
