package netnstest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The helpers below poll node processes: another process's state cannot be
// waited for any other way, so each polls every pollInterval up to a limit.

// waitMembers polls every node until each lists exactly want, and returns
// how long that took.
func waitMembers(t *testing.T, nodes []*nodeProc, want []string, limit time.Duration) time.Duration {
	t.Helper()
	took, views, ok := awaitMembers(t, nodes, want, limit)
	if !ok {
		t.Fatalf("nodes do not all list %v after %v: %s", want, limit, views)
	}
	return took
}

// awaitMembers polls every node until each lists exactly want or limit
// passes. It returns how long it took, the last views and whether they
// agreed.
func awaitMembers(t *testing.T, nodes []*nodeProc, want []string, limit time.Duration) (time.Duration, string, bool) {
	t.Helper()
	start := time.Now()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		var views []string
		agreed := true
		for _, n := range nodes {
			var members []string
			n.do(0, &members, "members")
			views = append(views, fmt.Sprintf("%s:%v", n.id, members))
			agreed = agreed && slices.Equal(members, want)
		}
		if agreed || time.Since(start) > limit {
			return time.Since(start), strings.Join(views, " "), agreed
		}
		<-ticker.C
	}
}

// waitReceived polls n until it has received count one-way messages tagged
// tag, and returns everything it received, by tag; more than count fails
// the test.
func waitReceived(t *testing.T, n *nodeProc, tag string, count uint64) map[string]uint64 {
	t.Helper()
	start := time.Now()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		var received map[string]uint64
		n.do(0, &received, "received")
		switch got := received[tag]; {
		case got == count:
			return received
		case got > count:
			t.Fatalf("%s received %d %q messages, %d were sent", n.id, got, tag, count)
		case time.Since(start) > deliverLimit:
			t.Fatalf("%s received %d of %d %q messages after %v (all: %v)", n.id, got, count, tag, deliverLimit, received)
		}
		<-ticker.C
	}
}

// waitAccounted polls from's account of peer's lane until nothing is
// pending there and every one-way message accepted since base has one
// outcome: written (MessagesSent) or dropped and reported to OnDropped. It
// fails the test if one is missing or counted twice. Nothing else may use
// the lane meanwhile.
func waitAccounted(t *testing.T, from *nodeProc, peer, lane string, base statsResult, sends callsResult) statsResult {
	t.Helper()
	start := time.Now()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	accepted := uint64(sends.OK)
	for {
		var s statsResult
		from.do(0, &s, "stats %s", peer)
		if !s.Present {
			t.Fatalf("%s's Stats no longer list %s (did failure detection act first?), so the %d accepted messages cannot be accounted for: %+v",
				from.id, peer, accepted, s)
		}
		now, then := s.lane(lane), base.lane(lane)
		written := now.Sent - then.Sent
		dropped := sumCounts(now.HookDropped) - sumCounts(then.HookDropped)
		counted := sumCounts(now.Dropped) - sumCounts(then.Dropped)
		if now.Pending == 0 && written+dropped >= accepted {
			if written+dropped != accepted {
				t.Errorf("%d one-way messages accepted but %d written + %d dropped (OnDropped) = %d outcomes",
					accepted, written, dropped, written+dropped)
			}
			// Stats' Dropped also counts refusals after the lane was
			// chosen (overloaded, context done), which OnDropped does not
			// see because Send returned an error.
			if counted < dropped || counted-dropped > uint64(sends.Failed) {
				t.Errorf("Stats count %d drops, OnDropped saw %d, %d sends were refused: they disagree",
					counted, dropped, sends.Failed)
			}
			return s
		}
		if time.Since(start) > quietLimit {
			t.Fatalf("after %v: %d accepted, %d written, %d dropped (OnDropped), %d pending: not every message is accounted for",
				quietLimit, accepted, written, dropped, now.Pending)
		}
		<-ticker.C
	}
}

// eventAfter polls n's record of peer's membership events until one of
// type kind happened after since, and returns it. An event is recorded once
// the transport's watcher returned.
func eventAfter(t *testing.T, n *nodeProc, peer, kind string, since time.Time) memberEvent {
	t.Helper()
	start := time.Now()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		var events []memberEvent
		n.do(0, &events, "events %s", peer)
		for _, ev := range events {
			if ev.Type == kind && ev.At.After(since) {
				return ev
			}
		}
		if time.Since(start) > deliverLimit {
			t.Fatalf("%s's transport saw no %s of %s since %v: %+v", n.id, kind, peer, since.Format(time.StampMicro), events)
		}
		<-ticker.C
	}
}

func requireAllOK(t *testing.T, what string, r callsResult, want int) {
	t.Helper()
	if r.OK != want {
		t.Fatalf("%s: %d of %d ok; failures %v: %s", what, r.OK, want, r.ByClass, strings.Join(r.Errors, " | "))
	}
}

// requireFast fails the test if a call of r, accepted or refused, waited:
// one-way sends return once queued, refusals need no network.
func requireFast(t *testing.T, what string, r callsResult) {
	t.Helper()
	if r.MaxOK > failFastLimit || r.MaxFailed > failFastLimit {
		t.Errorf("%s blocked: longest accepted %v, longest refused %v (limit %v)", what, r.MaxOK, r.MaxFailed, failFastLimit)
	}
}

// requireClasses fails the test if r has a failure of a class not allowed.
func requireClasses(t *testing.T, what string, r callsResult, allowed ...string) {
	t.Helper()
	for class, count := range r.ByClass {
		if !slices.Contains(allowed, class) {
			t.Errorf("%s: %d failed as %s (allowed: %v): %s", what, count, class, allowed, strings.Join(r.Errors, " | "))
		}
	}
}

func mergeCalls(a, b callsResult) callsResult {
	if a.Attempts == 0 {
		a.Started = b.Started
	}
	a.Attempts += b.Attempts
	a.OK += b.OK
	a.Failed += b.Failed
	a.NetTimeouts += b.NetTimeouts
	a.MaxOK = max(a.MaxOK, b.MaxOK)
	a.MaxFailed = max(a.MaxFailed, b.MaxFailed)
	a.Durations = append(a.Durations, b.Durations...)
	if len(b.ByClass) > 0 && a.ByClass == nil {
		a.ByClass = make(map[string]int)
	}
	for class, n := range b.ByClass {
		a.ByClass[class] += n
	}
	for _, e := range b.Errors {
		if !slices.Contains(a.Errors, e) && len(a.Errors) < maxErrors {
			a.Errors = append(a.Errors, e)
		}
	}
	return a
}

// ms rounds d for reading: to the millisecond, or to the microsecond below
// 10 ms.
func ms(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

func msList(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}
