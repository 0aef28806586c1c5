package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/exp/trace"
)

// pathRoles names the three goroutines of a round trip by the functions
// they were started with, as the summary prints them: the caller, which
// writes a request and blocks until it is answered (one goroutine per
// request, as in the bench's open-loop scenarios), the server's reader,
// which reads it and writes the response, and the client's reader, which
// reads the response and wakes the caller.
type pathRoles struct{ caller, server, client string }

// The hops of a round trip, in order.
const (
	hopCallerWork  = iota // caller: running, until its write system call
	hopCallerWrite        // caller: the write system call
	hopCallerAfter        // caller: after the write, until it blocks
	hopServerWake         // server: made runnable, after the caller's write ended
	hopServerQueue        // server: runnable, until it runs
	hopServerWork         // server: running, until its write system call
	hopClientWake         // client: made runnable, after the server's write began
	hopClientQueue        // client: runnable, until it runs
	hopClientWork         // client: running, until it makes the caller runnable
	hopCallerQueue        // caller: runnable, until it runs
	hopCallerEnd          // caller: running, until it exits
	hopTotal              // caller: from its first run until it runs again, answered
	numHops
)

var hopNames = [numHops]string{
	"caller: work before its write", "caller: write system call", "caller: after its write, until it blocks",
	"server: woken, after the caller's write", "server: runnable until it runs", "server: work before its write",
	"client: woken, after the server's write began", "client: runnable until it runs", "client: work until the caller is woken",
	"caller: runnable until it runs", "caller: after the answer, until it exits", "round trip: caller's first run to its answered run",
}

// paths holds each hop's durations over the round trips timed.
type paths struct {
	trips int
	hops  [numHops][]time.Duration
}

// A transition of one goroutine of the three roles.
type pathEvent struct {
	t        trace.Time
	g        trace.GoID
	role     string
	from, to trace.GoState
	writes   bool // a system call made from a function with "write" in its name
}

// roundTrips reads a trace and times the hops of each round trip whose
// caller started at least isolation after the one before it and before
// the one after it: requests sent together share the readers' turns, and
// their hops cannot be told apart.
//
// On a machine whose idle processors sleep, a server reader blocked in the
// network poller is often made runnable only when the caller, done with
// its work after the write, blocks and its processor polls the network:
// what the caller does after its write then delays the server as well.
func roundTrips(r io.Reader, roles pathRoles, isolation time.Duration) (*paths, error) {
	roleOf := map[trace.GoID]string{}
	var evs []pathEvent
	_, _, err := goTransitions(r, func(now trace.Time, st trace.StateTransition) {
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		if from == trace.GoNotExist {
			for fr := range st.Stack.Frames() {
				switch fr.Func {
				case roles.caller:
					roleOf[id] = "caller"
				case roles.server:
					roleOf[id] = "server"
				case roles.client:
					roleOf[id] = "client"
				}
				break
			}
		}
		rl := roleOf[id]
		if rl == "" {
			return
		}
		e := pathEvent{t: now, g: id, role: rl, from: from, to: to}
		if to == trace.GoSyscall {
			for fr := range st.Stack.Frames() {
				if strings.Contains(strings.ToLower(fr.Func), "write") {
					e.writes = true
					break
				}
			}
		}
		evs = append(evs, e)
		if to == trace.GoNotExist {
			delete(roleOf, id)
		}
	})
	if err != nil {
		return nil, err
	}
	return timeTrips(evs, isolation), nil
}

// A caller's own moments.
type trip struct {
	start, writeStart, writeEnd, blocked, ready, resumed, end trace.Time
}

// timeTrips times the round trips in evs, which are in time order.
func timeTrips(evs []pathEvent, isolation time.Duration) *paths {
	var trips []*trip
	callers := map[trace.GoID]*trip{}
	for _, e := range evs {
		if e.role != "caller" {
			continue
		}
		c := callers[e.g]
		if c == nil {
			c = &trip{}
			callers[e.g] = c
			trips = append(trips, c)
		}
		switch {
		case e.to == trace.GoRunning && c.start == 0:
			c.start = e.t
		case e.to == trace.GoSyscall && e.writes && c.writeStart == 0:
			c.writeStart = e.t
		case e.from == trace.GoSyscall && c.writeStart != 0 && c.writeEnd == 0:
			c.writeEnd = e.t
		case e.to == trace.GoWaiting && c.writeEnd != 0 && c.blocked == 0:
			c.blocked = e.t
		case e.from == trace.GoWaiting && e.to == trace.GoRunnable && c.blocked != 0 && c.ready == 0:
			c.ready = e.t
		case e.to == trace.GoRunning && c.ready != 0 && c.resumed == 0:
			c.resumed = e.t
		case e.to == trace.GoNotExist:
			c.end = e.t
		}
		if e.to == trace.GoNotExist {
			delete(callers, e.g)
		}
	}
	// first returns the first event at or after t of role that matches.
	first := func(t trace.Time, role string, match func(pathEvent) bool) (pathEvent, bool) {
		i, _ := slices.BinarySearchFunc(evs, t, func(e pathEvent, t trace.Time) int { return int(e.t - t) })
		for ; i < len(evs); i++ {
			if evs[i].role == role && match(evs[i]) {
				return evs[i], true
			}
		}
		return pathEvent{}, false
	}
	p := &paths{}
	for i, c := range trips {
		if c.start == 0 || c.blocked == 0 || c.resumed == 0 || c.end == 0 {
			continue // not a request, or cut off by the trace's end
		}
		if i > 0 && time.Duration(c.start-trips[i-1].start) < isolation ||
			i+1 < len(trips) && time.Duration(trips[i+1].start-c.start) < isolation {
			continue
		}
		woken, ok := first(c.writeStart, "server", func(e pathEvent) bool { return e.from == trace.GoWaiting && e.to == trace.GoRunnable })
		if !ok {
			continue
		}
		ran, ok := first(woken.t, "server", func(e pathEvent) bool { return e.g == woken.g && e.to == trace.GoRunning })
		if !ok {
			continue
		}
		wrote, ok := first(ran.t, "server", func(e pathEvent) bool { return e.g == woken.g && e.writes })
		if !ok {
			continue
		}
		cwoken, ok := first(wrote.t, "client", func(e pathEvent) bool { return e.from == trace.GoWaiting && e.to == trace.GoRunnable })
		if !ok || cwoken.t > c.ready {
			continue
		}
		cran, ok := first(cwoken.t, "client", func(e pathEvent) bool { return e.g == cwoken.g && e.to == trace.GoRunning })
		if !ok || cran.t > c.ready {
			continue
		}
		d := func(from, to trace.Time) time.Duration { return time.Duration(to - from) }
		for h, v := range [numHops]time.Duration{
			d(c.start, c.writeStart), d(c.writeStart, c.writeEnd), d(c.writeEnd, c.blocked),
			d(c.writeEnd, woken.t), d(woken.t, ran.t), d(ran.t, wrote.t),
			d(wrote.t, cwoken.t), d(cwoken.t, cran.t), d(cran.t, c.ready),
			d(c.ready, c.resumed), d(c.resumed, c.end), d(c.start, c.resumed),
		} {
			p.hops[h] = append(p.hops[h], v)
		}
		p.trips++
	}
	return p
}

func (p *paths) print(w io.Writer) {
	fmt.Fprintf(w, "%d round trips timed\n", p.trips)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "p25\tp50\tp75\t hop\t")
	for h := range numHops {
		fmt.Fprintf(tw, "%v\t%v\t%v\t %s\t\n", percentile(p.hops[h], 0.25), percentile(p.hops[h], 0.5), percentile(p.hops[h], 0.75), hopNames[h])
	}
	tw.Flush()
}
