package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/internode/internode/coalescing"
)

// recordedArrivals is the most arrivals an arrivalRecorder keeps: about a
// second of the busiest link workload, a few hundred kilobytes of text.
const recordedArrivals = 50_000

// arrivalRecorder is a coalescing strategy that passes everything to the
// one it wraps and keeps the arrivals it is shown (each message's enqueue
// time and encoded size, up to recordedArrivals), for the link command's
// -record: real arrival traces for coalescing's tests to replay.
type arrivalRecorder struct {
	coalescing.Strategy
	path  string
	title string
	mu    sync.Mutex // Observe runs on the writer, flush on the node's exit
	at    []int64    // Unix ns
	sizes []int
}

func (r *arrivalRecorder) Observe(enqueuedAt time.Time, size int) {
	r.mu.Lock()
	if len(r.at) < recordedArrivals {
		r.at = append(r.at, enqueuedAt.UnixNano())
		r.sizes = append(r.sizes, size)
	}
	r.mu.Unlock()
	r.Strategy.Observe(enqueuedAt, size)
}

// write writes the trace to its file as text: comment lines, then one
// line per arrival, "gap_ns size", the gap from the arrival before (0 for
// the first; negative when a producer stamped its message before the one
// queued ahead of it). A connection that saw no message writes nothing.
func (r *arrivalRecorder) write() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.at) == 0 {
		return nil
	}
	f, err := os.Create(r.path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "# internode arrival trace: %s\n# %d arrivals; per line: gap from the previous arrival in ns, encoded size in bytes\n", r.title, len(r.at))
	prev := r.at[0]
	for i, at := range r.at {
		fmt.Fprintf(w, "%d %d\n", at-prev, r.sizes[i])
		prev = at
	}
	return errors.Join(w.Flush(), f.Close())
}

// linkRecorders are the recorders of this node process, written by
// writeLinkRecords once its transport is closed.
var linkRecorders struct {
	mu   sync.Mutex
	list []*arrivalRecorder
}

// recordArrivals wraps s to record its arrivals in dir, named after the
// cell and the connection's order among this process's recorders.
func recordArrivals(s coalescing.Strategy, dir string, cell linkCell) coalescing.Strategy {
	linkRecorders.mu.Lock()
	defer linkRecorders.mu.Unlock()
	name := fmt.Sprintf("%s-%s-%s-%d.arrivals", cell.Topology, cell.workloadName(), cell.System, len(linkRecorders.list))
	r := &arrivalRecorder{Strategy: s, path: filepath.Join(dir, name),
		title: fmt.Sprintf("bench link, topology %s, workload %s, system %s, sender's small lane", cell.Topology, cell.workloadName(), cell.System)}
	linkRecorders.list = append(linkRecorders.list, r)
	return r
}

// writeLinkRecords writes every recorder's trace.
func writeLinkRecords() error {
	linkRecorders.mu.Lock()
	defer linkRecorders.mu.Unlock()
	var errs []error
	for _, r := range linkRecorders.list {
		errs = append(errs, r.write())
	}
	return errors.Join(errs...)
}

// workloadName is the cell's workload as the -workloads flag spells it,
// without the payload: rrN or owR.
func (c linkCell) workloadName() string {
	if c.Workload == "rr" {
		return fmt.Sprintf("rr%d", c.InFlight)
	}
	return fmt.Sprintf("ow%d", c.Rate)
}
