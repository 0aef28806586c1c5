package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/internode/internode/coalescing"
)

// linkCommand is the first argument that runs the link command instead of
// the scenarios: "bench link -topology router,veth ...". See link_netns.go
// for the network it builds and doc.go for how to run it.
const linkCommand = "link"

// linkWorkload is one workload of the link command, parsed from -workloads:
// "rrN" is request/response with N in flight; "owR" is one-way at R
// messages/s, or at R times the packet cap when R ends in "x"; "@B" after
// either sets the payload to B bytes (default -payload).
type linkWorkload struct {
	spec     string
	kind     string // "oneway" or "rr"
	inFlight int
	rate     int
	payload  int
}

func parseLinkWorkload(spec string, pps, payload int) (linkWorkload, error) {
	w := linkWorkload{spec: spec, payload: payload}
	body := spec
	if at := strings.IndexByte(spec, '@'); at >= 0 {
		n, err := strconv.Atoi(spec[at+1:])
		if err != nil || n < 0 {
			return w, fmt.Errorf("workload %q: bad payload", spec)
		}
		body, w.payload = spec[:at], n
	}
	switch {
	case strings.HasPrefix(body, "rr"):
		n, err := strconv.Atoi(body[2:])
		if err != nil || n < 1 {
			return w, fmt.Errorf("workload %q: want rrN, N ≥ 1", spec)
		}
		w.kind, w.inFlight = "rr", n
	case strings.HasPrefix(body, "ow"):
		r := body[2:]
		if times, ok := strings.CutSuffix(r, "x"); ok {
			f, err := strconv.ParseFloat(times, 64)
			if err != nil || f <= 0 {
				return w, fmt.Errorf("workload %q: bad multiple of the cap", spec)
			}
			w.rate = int(f * float64(pps))
		} else {
			n, err := strconv.Atoi(r)
			if err != nil || n < 1 {
				return w, fmt.Errorf("workload %q: want owR or owRx", spec)
			}
			w.rate = n
		}
		w.kind = "oneway"
	default:
		return w, fmt.Errorf("workload %q: want rrN or owR[x]", spec)
	}
	return w, nil
}

// linkSystems are the systems the link command compares by default: every
// coalescing strategy, then raw TCP with Nagle on and off.
func linkSystems() []string {
	return append(coalescing.Names(), "raw-nagle", "raw-nodelay")
}

// runLink is the link command: for each topology, namespaces are set up,
// repeats alternate over workloads and systems (for r in repeats: for w in
// workloads: for s in systems), and the namespaces are deleted, pass or
// fail.
func runLink(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topologies := fs.String("topology", "router,veth", "networks to emulate: router (sender, router, receiver; the cap on the router) and/or veth (one pair; the cap on the sender's side)")
	pps := fs.Int("pps", 10_000, "packets per second the capped link passes")
	workloads := fs.String("workloads", "rr1,rr16,rr64,rr256,ow1.5x,ow1.5x@1024,ow500", "comma-separated workloads: rrN (request/response, N in flight), owR (one-way at R msgs/s; owRx: R × -pps), @B for a B-byte payload")
	systems := fs.String("systems", strings.Join(linkSystems(), ","), "comma-separated systems: coalescing strategies ("+strings.Join(coalescing.Names(), ", ")+"), raw-nagle, raw-nodelay")
	payload := fs.Int("payload", 128, "payload bytes, unless a workload sets its own")
	duration := fs.Duration("duration", 3*time.Second, "measured interval per cell")
	warmup := fs.Duration("warmup", time.Second, "load before measuring, per cell")
	repeat := fs.Int("repeat", 3, "runs per cell; the table shows medians")
	jsonOut := fs.Bool("json", false, "print one JSON object per run instead of the tables")
	record := fs.String("record", "", "write the sender's small-lane arrivals (enqueue time and size of each message, the first 50 000 of each connection) to files in this directory, one per cell and repeat: traces for coalescing's tests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pps < 100 || *duration <= 0 || *warmup < 0 || *repeat < 1 {
		return errors.New("link: need -pps ≥ 100, -duration > 0, -warmup ≥ 0, -repeat ≥ 1")
	}
	var wls []linkWorkload
	for _, spec := range strings.Split(*workloads, ",") {
		w, err := parseLinkWorkload(strings.TrimSpace(spec), *pps, *payload)
		if err != nil {
			return fmt.Errorf("link: %w", err)
		}
		wls = append(wls, w)
	}
	syss := strings.Split(*systems, ",")
	for i, s := range syss {
		syss[i] = strings.TrimSpace(s)
		if _, err := coalescing.ByName(syss[i], 0); err != nil && !slices.Contains([]string{"raw-nagle", "raw-nodelay"}, syss[i]) {
			return fmt.Errorf("link: unknown system %q", syss[i])
		}
	}
	fmt.Fprintln(stdout, hostLine())
	// An interrupt still removes the namespaces: the children die with
	// their context, then the topology in use is deleted.
	var current atomic.Pointer[linkTopology]
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-signals; !ok {
			return
		}
		if t := current.Load(); t != nil {
			_ = t.close()
		}
		fmt.Fprintln(stderr, "link: interrupted; namespaces removed")
		os.Exit(1)
	}()
	defer func() {
		signal.Stop(signals)
		close(signals)
	}()
	for _, topo := range strings.Split(*topologies, ",") {
		t, err := setupLink(strings.TrimSpace(topo), *pps)
		if err != nil {
			return err
		}
		current.Store(t)
		results := map[[2]string][]linkResult{} // by workload, system
		runErr := func() error {
			for rep := range *repeat {
				for _, w := range wls {
					for _, sys := range syss {
						cell := linkCell{Topology: t.name, System: sys, Workload: w.kind, Payload: w.payload, Rate: w.rate,
							InFlight: w.inFlight, Warmup: *warmup, Duration: *duration,
							SendAddr: t.sendAddr, RecvAddr: t.recvAddr, SendDev: t.sendDev}
						if *record != "" {
							cell.Record = filepath.Join(*record, fmt.Sprintf("repeat%d", rep+1))
							if err := os.MkdirAll(cell.Record, 0o755); err != nil {
								return err
							}
						}
						fmt.Fprintf(stderr, "link %s / %s / %s: repeat %d of %d\n", t.name, w.spec, sys, rep+1, *repeat)
						res, err := runLinkCell(t, cell)
						if err != nil {
							return fmt.Errorf("link %s / %s / %s: %w", t.name, w.spec, sys, err)
						}
						if *jsonOut {
							_ = json.NewEncoder(stdout).Encode(struct {
								Topology, Workload, System string
								linkResult
							}{t.name, w.spec, sys, res})
						}
						key := [2]string{w.spec, sys}
						results[key] = append(results[key], res)
					}
				}
			}
			return nil
		}()
		current.Store(nil)
		closeErr := t.close()
		if err := errors.Join(runErr, closeErr); err != nil {
			return err
		}
		if !*jsonOut {
			printLinkTable(stdout, t, wls, syss, results)
		}
	}
	return nil
}

// runLinkCell runs one cell: the receiver in its namespace, then the
// sender in its own, which measures; then the receiver reports.
func runLinkCell(t *linkTopology, cell linkCell) (linkResult, error) {
	exe, err := linkSelf()
	if err != nil {
		return linkResult{}, err
	}
	cellJSON, err := json.Marshal(cell)
	if err != nil {
		return linkResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cell.Warmup+cell.Duration+60*time.Second)
	defer cancel()
	recv := exec.CommandContext(ctx, "ip", "netns", "exec", t.recvNS, exe, linkNodeArg, "receiver", string(cellJSON))
	recvIn, err := recv.StdinPipe()
	if err != nil {
		return linkResult{}, err
	}
	recvOut, err := recv.StdoutPipe()
	if err != nil {
		return linkResult{}, err
	}
	var recvErr strings.Builder
	recv.Stderr = &recvErr
	if err := recv.Start(); err != nil {
		return linkResult{}, err
	}
	stopReceiver := func() (linkReceiverReport, error) {
		recvIn.Close()
		var rep linkReceiverReport
		decErr := json.NewDecoder(recvOut).Decode(&rep)
		waitErr := recv.Wait()
		if waitErr != nil || decErr != nil {
			return rep, fmt.Errorf("receiver: %w %s", errors.Join(waitErr, decErr), strings.TrimSpace(recvErr.String()))
		}
		return rep, nil
	}
	lines := bufio.NewReader(recvOut)
	if line, err := lines.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		_, stopErr := stopReceiver()
		return linkResult{}, fmt.Errorf("receiver did not start: %q: %w", line, errors.Join(err, stopErr))
	}
	recvOut = io.NopCloser(lines)

	send := exec.CommandContext(ctx, "ip", "netns", "exec", t.sendNS, exe, linkNodeArg, "sender", string(cellJSON))
	var sendErr strings.Builder
	send.Stderr = &sendErr
	out, runErr := send.Output()
	var res linkResult
	decErr := json.Unmarshal(out, &res)
	rep, stopErr := stopReceiver()
	if decErr != nil || runErr != nil {
		return res, fmt.Errorf("sender: %w %s", errors.Join(runErr, decErr, stopErr), strings.TrimSpace(sendErr.String()))
	}
	if res.Error != "" {
		return res, errors.Join(errors.New(res.Error), stopErr)
	}
	if stopErr != nil {
		return res, stopErr
	}
	if cell.Workload == "oneway" {
		res.Msgs, res.P50us, res.P99us = rep.Count, rep.P50us, rep.P99us
	}
	return res, nil
}

// printLinkTable prints one table per workload: medians over the repeats,
// and each system's throughput against Disabled's and against the best
// other coalescing strategy's (the raw sockets are not strategies).
func printLinkTable(w io.Writer, t *linkTopology, wls []linkWorkload, syss []string, results map[[2]string][]linkResult) {
	fmt.Fprintf(w, "\ntopology %s, cap %d packets/s (tbf mpu %d B)\n", t.name, t.packetsPerSec, linkMPU)
	for _, wl := range wls {
		fmt.Fprintf(w, "\n%s (payload %d B)\n", wl.spec, wl.payload)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "system\tmsgs/s\t×disabled\t×best other strategy\tpkts/msg\tp50 µs\tp99 µs\twaits req/obs µs\t")
		rate := map[string]float64{}
		for _, sys := range syss {
			rate[sys] = linkMedian(results[[2]string{wl.spec, sys}], func(r linkResult) float64 { return float64(r.Msgs) / r.Seconds })
		}
		for _, sys := range syss {
			rs := results[[2]string{wl.spec, sys}]
			best := 0.0
			for other, v := range rate {
				if other != sys && !isRawLink(other) { // the raw sockets are the bar beyond, not strategies
					best = max(best, v)
				}
			}
			ratio := func(base float64) string {
				if base == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", rate[sys]/base)
			}
			waits := "-"
			if req := linkMedian(rs, func(r linkResult) float64 { return r.RequestedAvg }); req > 0 {
				waits = fmt.Sprintf("%.0f/%.0f", req, linkMedian(rs, func(r linkResult) float64 { return r.ObservedAvg }))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.2f\t%.0f\t%.0f\t%s\t\n", sys, rate[sys], ratio(rate[coalescing.NameDisabled]), ratio(best),
				linkMedian(rs, func(r linkResult) float64 { return float64(r.Packets) / max(float64(r.Msgs), 1) }),
				linkMedian(rs, func(r linkResult) float64 { return r.P50us }),
				linkMedian(rs, func(r linkResult) float64 { return r.P99us }), waits)
		}
		_ = tw.Flush()
	}
}

// linkMedian is the median of f over rs (0 for none): of an even count,
// the mean of the middle two, as for the scenarios (medianOf).
func linkMedian(rs []linkResult, f func(linkResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return medianOf(vs)
}
