// Command tracestat sums a runtime execution trace by goroutine role: for
// each function goroutines were started with, how many there were and how
// long they spent running, runnable (ready, waiting for a processor), in
// system calls and blocked, and how long a goroutine made runnable waited
// before it ran (the median and 90th percentile of those waits). It also
// times each turn a goroutine takes, from when it first runs after being
// made runnable until it blocks or exits (preemptions inside it included):
// the median turn, and the median time of a turn spent in system calls.
// A role's turns against another program's doing the same (a round trip:
// caller, the peer's reader, the caller's reader) show which hop costs the
// difference, and whether in user space or in the kernel.
//
//	go -C examples/bench run . -scenario small -systems internode -repeat 1 -duration 1s -warmup 300ms -trace /tmp/small.trace
//	go -C examples/bench run ./tracestat /tmp/small.trace
//
// A role that is runnable for much of its life is short of processors: in
// a pipeline, the stage that limits the rest. It reads traces of Go 1.22
// and later (golang.org/x/exp/trace).
//
// With -caller, -server and -client it times the hops of each round trip
// instead (see roundTrips): the caller's work before and after its write,
// how long after that write the server's reader was woken, its work
// before its own write, and so on back to the caller. For the latency
// scenario, one request every 2 ms so that requests do not come in pairs:
//
//	go -C examples/bench run . -scenario latency -systems internode -rate 500 -repeat 1 -duration 2s -warmup 300ms -trace /tmp/l.trace
//	go -C examples/bench run ./tracestat -caller 'main.(*Run).Go.func1' \
//		-server 'github.com/internode/internode/transport.(*Transport).acceptLoop.func1' \
//		-client 'github.com/internode/internode/transport.(*outConn).readBack' /tmp/l.trace
//
// and for -systems raw-tcp-naive, -server 'main.(*rawTCP).Start.func1'
// -client 'main.(*rawTCP).Start.func2'.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	top := flag.Int("top", 12, "roles to print, most running time first")
	var roles pathRoles
	flag.StringVar(&roles.caller, "caller", "", "with -server and -client: time the hops of round trips instead, each made by a goroutine started with this function (main.(*Run).Go.func1 in the bench)")
	flag.StringVar(&roles.server, "server", "", "the function the server's reader was started with")
	flag.StringVar(&roles.client, "client", "", "the function the client's reader was started with")
	isolation := flag.Duration("isolation", 300*time.Microsecond, "round trips timed: those whose caller started at least this long after the one before and before the one after")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: tracestat [-top N] trace.out\n       tracestat -caller F -server F -client F [-isolation D] trace.out")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if roles != (pathRoles{}) {
		p, err := roundTrips(f, roles, *isolation)
		if err != nil {
			log.Fatal(err)
		}
		p.print(os.Stdout)
		return
	}
	s, err := summarize(f)
	if err != nil {
		log.Fatal(err)
	}
	s.print(os.Stdout, *top)
}

// role is what the goroutines started with one function did.
type role struct {
	name       string
	goroutines int
	time       [numStates]time.Duration
	waits      []time.Duration // runnable to running
	turns      []time.Duration // first run after being made runnable, to blocked or exited
	turnSys    []time.Duration // of each turn, the time in system calls
}

// The states time is summed over.
const (
	running = iota
	runnable
	syscall
	blocked
	numStates
)

func stateOf(s trace.GoState) int {
	switch s {
	case trace.GoRunning:
		return running
	case trace.GoRunnable:
		return runnable
	case trace.GoSyscall:
		return syscall
	case trace.GoWaiting:
		return blocked
	}
	return -1
}

type goroutine struct {
	role  *role
	state trace.GoState
	since trace.Time
	// The turn under way, if inTurn: when it began and its time in
	// system calls so far.
	inTurn    bool
	turnStart trace.Time
	turnSys   time.Duration
}

type summary struct {
	span  time.Duration
	roles map[string]*role
}

// summarize reads a trace and sums it by role.
func summarize(r io.Reader) (*summary, error) {
	s := &summary{roles: map[string]*role{}}
	gs := map[trace.GoID]*goroutine{}
	first, last, err := goTransitions(r, func(now trace.Time, st trace.StateTransition) {
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil || from == trace.GoNotExist {
			// A goroutine seen first mid-life (it existed when the trace
			// began) has no creation stack: "(started before the trace)".
			name := "(started before the trace)"
			if from == trace.GoNotExist {
				for fr := range st.Stack.Frames() {
					name = fr.Func
					break
				}
			}
			rl := s.roles[name]
			if rl == nil {
				rl = &role{name: name}
				s.roles[name] = rl
			}
			rl.goroutines++
			g = &goroutine{role: rl, state: from, since: now}
			gs[id] = g
		}
		d := time.Duration(now - g.since)
		if i := stateOf(g.state); i >= 0 {
			g.role.time[i] += d
		}
		if g.state == trace.GoRunnable && to == trace.GoRunning {
			g.role.waits = append(g.role.waits, d)
			if !g.inTurn {
				g.inTurn, g.turnStart, g.turnSys = true, now, 0
			}
		}
		if g.state == trace.GoSyscall && g.inTurn {
			g.turnSys += d
		}
		if g.inTurn && (to == trace.GoWaiting || to == trace.GoNotExist) {
			g.inTurn = false
			g.role.turns = append(g.role.turns, time.Duration(now-g.turnStart))
			g.role.turnSys = append(g.role.turnSys, g.turnSys)
		}
		g.state, g.since = to, now
		if to == trace.GoNotExist {
			delete(gs, id)
		}
	})
	if err != nil {
		return nil, err
	}
	s.span = time.Duration(last - first)
	return s, nil
}

// goTransitions reads a trace and calls each with every state transition
// of a goroutine, in time order, and the time it happened; it returns the
// times of the trace's first and last events.
func goTransitions(r io.Reader, each func(now trace.Time, st trace.StateTransition)) (first, last trace.Time, err error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return 0, 0, err
	}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			return first, last, nil
		}
		if err != nil {
			return first, last, err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		if st := ev.StateTransition(); st.Resource.Kind == trace.ResourceGoroutine {
			each(ev.Time(), st)
		}
	}
}

func (s *summary) print(w io.Writer, top int) {
	roles := make([]*role, 0, len(s.roles))
	for _, r := range s.roles {
		roles = append(roles, r)
	}
	slices.SortFunc(roles, func(a, b *role) int { return cmp.Compare(b.time[running], a.time[running]) })
	fmt.Fprintf(w, "trace of %v; times are summed over each role's goroutines\n", s.span.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "goroutines\trunning\trunnable\tsyscall\tblocked\trunnable share\twait p50\twait p90\tturns\tturn p50\tsyscalls p50\t role\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }
	for _, r := range roles[:min(top, len(roles))] {
		alive := r.time[running] + r.time[runnable] + r.time[syscall] + r.time[blocked]
		share := 0.0
		if alive > 0 {
			share = float64(r.time[runnable]) / float64(alive)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.0f%%\t%v\t%v\t%d\t%v\t%v\t %s\t\n", r.goroutines,
			ms(r.time[running]), ms(r.time[runnable]), ms(r.time[syscall]), ms(r.time[blocked]),
			100*share, percentile(r.waits, 0.5), percentile(r.waits, 0.9),
			len(r.turns), percentile(r.turns, 0.5), percentile(r.turnSys, 0.5), r.name)
	}
	tw.Flush()
}

// percentile returns the p-th percentile of ds (sorting it), to 100 ns.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[int(float64(len(ds)-1)*p)].Round(100 * time.Nanosecond)
}
