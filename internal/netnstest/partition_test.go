package netnstest

import (
	"flag"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// Targets, pacing and bounds of TestNetnsPartitionHeals.
const (
	// healTarget is the liveness target: requests to a node whose
	// partition healed succeed again within this long of the heal.
	healTarget = 1500 * time.Millisecond
	// memberlistShare is how much of healTarget memberlist may take to
	// reach the healed node again; the transport is not blamed for any
	// more than that.
	memberlistShare = time.Second
	// memberlistReconnect is how often each node tries to rejoin the
	// members it declared dead (with -netns.partitiondead). Memberlist
	// talks to no member it declared dead otherwise, so with its default
	// of 5 s the healed node would be seen alive anywhere up to 5 s after
	// the heal, as the timers happen to fall, and a slow transport could
	// hide behind it.
	memberlistReconnect = 200 * time.Millisecond
	// suspicionMargin is how much longer than the partition a suspected
	// member stays suspected, unless -netns.partitiondead: time enough to
	// refute the suspicion once the partition healed.
	suspicionMargin = 5 * time.Second

	loadLead         = 1500 * time.Millisecond // traffic flows this long before the partition
	loadTail         = time.Second             // and goes on this long into it
	loadRequestEvery = 20 * time.Millisecond
	loadSendEvery    = 50 * time.Millisecond
	loadSendTimeout  = 5 * time.Second

	partitionEvery   = 100 * time.Millisecond // requests during the partition
	partitionTimeout = 500 * time.Millisecond

	probeLead        = time.Second // probes begin this long before the heal
	probeEvery       = 50 * time.Millisecond
	probeTimeout     = 300 * time.Millisecond // per request while recovering
	probeSendTimeout = 2 * time.Second        // expiry of a one-way message while recovering
	recoveryWindow   = 8 * time.Second        // probes go on this long after the heal

	requestSize = 64 // bytes: requests and responses travel on the small lane
)

var (
	partitionHold = flag.Duration("netns.partitionhold", 10*time.Second,
		"how long TestNetnsPartitionHeals keeps n3 partitioned")
	partitionBy = flag.String("netns.partitionby", partitionByNft,
		`how TestNetnsPartitionHeals partitions n3: "nft" (drop rules on the switch, every link up; "link" if nft is missing) or "link" (n3's switch port down)`)
	partitionDead = flag.Bool("netns.partitiondead", false,
		"in TestNetnsPartitionHeals, let memberlist declare n3 dead during the partition (the lab's fast failure detection) instead of only suspecting it")
)

// TestNetnsPartitionHeals measures how soon traffic resumes after a
// partition heals: n3 is cut off silently while n1 and n3 have requests
// and one-way messages in flight to each other, then reconnected; see the
// package documentation.
func TestNetnsPartitionHeals(t *testing.T) {
	requireNetns(t)
	if *partitionHold < 2*probeLead {
		t.Fatalf("-netns.partitionhold=%v: want at least %v", *partitionHold, 2*probeLead)
	}
	by := partitionMethod(t)
	opts := nodeOptions{ReconnectInterval: memberlistReconnect}
	if !*partitionDead {
		// Suspected for longer than the partition lasts: the transport
		// hears of no departure and keeps its connections.
		opts.SuspicionMult = int((*partitionHold+suspicionMargin)/gossipProbeInterval) + 1
	}
	began := time.Now()
	h := &healScenario{scenario: newScenario(t, opts), by: by, runs: make(map[string]callsResult)}
	h.whole()
	h.partition()
	h.heal()
	h.collect()
	h.checkPartition()
	h.measure()
	h.account()
	quitting := time.Now()
	quitAll(t, h.nodes)
	t.Logf("quit: the nodes shut down and exited in %v; whole test %v", ms(time.Since(quitting)), ms(time.Since(began)))
}

// partitionMethod returns how to partition, from -netns.partitionby.
func partitionMethod(t *testing.T) string {
	switch *partitionBy {
	case partitionByLink:
		return partitionByLink
	case partitionByNft:
		if _, err := exec.LookPath("nft"); err != nil {
			t.Logf("partitioning by taking n3's switch port down: nft not found (%v); install nftables to partition with every link up", err)
			return partitionByLink
		}
		return partitionByNft
	}
	t.Fatalf("-netns.partitionby=%q: want %q or %q", *partitionBy, partitionByNft, partitionByLink)
	return ""
}

// healScenario is the state of TestNetnsPartitionHeals between its phases.
type healScenario struct {
	*scenario
	by             string
	base13, base31 statsResult // n1's account of n3, n3's of n1, before any one-way message
	cutAt, healAt  time.Time
	// healBegan is when the heal command started: packets may pass from
	// then on, before it returns at healAt.
	healBegan time.Time
	// runs holds the repeat runs' results by "<node>/<run>", once
	// collected.
	runs map[string]callsResult
}

// pairs are the two directions of traffic, n1 → n3 and n3 → n1.
func (h *healScenario) pairs() [][2]*nodeProc { return [][2]*nodeProc{{h.n1, h.n3}, {h.n3, h.n1}} }

// whole checks that requests get through both ways and takes the
// baseline of the one-way accounts.
func (h *healScenario) whole() {
	for _, pair := range h.pairs() {
		var r callsResult
		pair[0].do(10*requestTimeout, &r, "request %s 10 %v", pair[1].id, requestTimeout)
		requireAllOK(h.t, fmt.Sprintf("%s → %s requests before the partition", pair[0].id, pair[1].id), r, 10)
	}
	h.n1.do(0, &h.base13, "stats n3")
	h.n3.do(0, &h.base31, "stats n1")
}

// partition starts traffic both ways between n1 and n3, cuts n3 off while
// it flows, keeps the two trying to reach each other, and returns when
// the partition is to heal. Requests travel on the small lane and one-way
// messages on the large one, so that each one-way message's outcome can be
// told from the large lane's counters: nothing else uses that lane.
func (h *healScenario) partition() {
	t := h.t
	loadFor := loadLead + loadTail
	for _, pair := range h.pairs() {
		from, to := pair[0], pair[1]
		from.do(0, nil, "repeat load-req request %s %v %v %v %d", to.id, loadRequestEvery, loadFor, requestTimeout, requestSize)
		from.do(0, nil, "repeat load-ow send %s %v %v %v %d load-%s", to.id, loadSendEvery, loadFor, loadSendTimeout, largeSize, from.id)
	}
	loadStarted := time.Now()
	time.Sleep(time.Until(loadStarted.Add(loadLead))) // traffic flowing, not a wait for a goroutine

	h.lab.partition(3, h.by)
	h.cutAt = time.Now()
	t.Logf("partition: n3 cut off by %s after %v of traffic both ways; it lasts %v", h.by, ms(h.cutAt.Sub(loadStarted)), *partitionHold)
	partFor := *partitionHold - probeLead
	for _, pair := range h.pairs() {
		pair[0].do(0, nil, "repeat part-req request %s %v %v %v %d", pair[1].id, partitionEvery, partFor, partitionTimeout, requestSize)
	}

	// Probes: requests and one-way messages both ways, begun before the
	// heal so that when it comes they are already issued every
	// probeEvery, and what is measured is the transport, not the polling.
	time.Sleep(time.Until(h.cutAt.Add(partFor))) // the partition itself
	probeFor := probeLead + recoveryWindow
	for _, pair := range h.pairs() {
		from, to := pair[0], pair[1]
		from.do(0, nil, "repeat rec-req request %s %v %v %v %d", to.id, probeEvery, probeFor, probeTimeout, requestSize)
		from.do(0, nil, "repeat rec-ow send %s %v %v %v %d rec-%s", to.id, probeEvery, probeFor, probeSendTimeout, largeSize, from.id)
	}
	time.Sleep(time.Until(h.cutAt.Add(*partitionHold))) // the partition itself
}

// heal ends the partition and notes when.
func (h *healScenario) heal() {
	var dropped string
	if h.by == partitionByNft {
		from, to := h.lab.partitionDrops()
		dropped = fmt.Sprintf("; the switch dropped %d frames from n3 and %d to it", from, to)
	}
	h.healBegan = time.Now()
	h.lab.heal(3, h.by)
	h.healAt = time.Now()
	h.t.Logf("heal: n3 reconnected %v after the cut (the command took %v)%s", ms(h.healAt.Sub(h.cutAt)), ms(h.healAt.Sub(h.healBegan)), dropped)
}

// collect waits for every repeat run to end.
func (h *healScenario) collect() {
	for _, n := range []*nodeProc{h.n1, h.n3} {
		for _, name := range []string{"load-req", "load-ow", "part-req", "rec-req", "rec-ow"} {
			var r callsResult
			n.do(time.Until(h.healAt.Add(recoveryWindow+probeSendTimeout)), &r, "wait %s", name)
			h.runs[n.id+"/"+name] = r
		}
	}
}

// checkPartition checks that the partition was one: no request begun
// after the cut succeeded before the heal, requests failed within about
// their timeout, memberlist's probes went unanswered, and memberlist
// declared n3 dead or not as the scenario wants.
func (h *healScenario) checkPartition() {
	t := h.t
	for _, pair := range h.pairs() {
		from, to := pair[0], pair[1]
		load, part := h.runs[from.id+"/load-req"], h.runs[from.id+"/part-req"]
		var loadBefore, leaked int
		for _, c := range append(load.Log, part.Log...) {
			switch {
			case c.Class == "" && c.End().Before(h.cutAt):
				loadBefore++
			case c.Class == "" && c.Start.After(h.cutAt) && c.End().Before(h.healBegan):
				leaked++
			}
		}
		oneWay := h.runs[from.id+"/load-ow"]
		t.Logf("%s → %s before the partition: %d requests ok, %d of %d one-way messages accepted; during it: %d requests (timeout %v) failed %v, longest %v",
			from.id, to.id, loadBefore, oneWay.OK, oneWay.Attempts, part.Failed, partitionTimeout, part.ByClass, ms(part.MaxFailed))
		if loadBefore == 0 {
			t.Errorf("%s: no request succeeded before the partition: there was no traffic to cut", from.id)
		}
		if leaked > 0 {
			t.Errorf("%s: %d requests begun after the cut succeeded before the heal: the partition let packets through", from.id, leaked)
		}
		if part.MaxFailed > partitionTimeout+timeoutSlack {
			t.Errorf("%s: a request during the partition failed only after %v; its timeout was %v", from.id, ms(part.MaxFailed), partitionTimeout)
		}

		var contacts []contact
		from.do(0, &contacts, "contacts %s", to.id)
		for _, c := range contacts {
			if c.Kind == contactAck && c.At.After(h.cutAt.Add(gossipProbeInterval)) && c.At.Before(h.healBegan) {
				t.Errorf("%s's memberlist had a probe of %s answered %v into the partition: the partition let packets through",
					from.id, to.id, ms(c.At.Sub(h.cutAt)))
				break
			}
		}
		leave, declared := h.eventBetween(from, to.id, "leave", h.cutAt, h.healAt)
		switch {
		case declared:
			t.Logf("%s's membership declared %s gone %v after the cut", from.id, to.id, ms(leave.Sub(h.cutAt)))
		default:
			t.Logf("%s's membership kept %s throughout the partition (suspected, not declared dead)", from.id, to.id)
		}
		if declared != *partitionDead {
			t.Errorf("%s's membership declared %s gone during the partition: %v; the scenario wants %v (-netns.partitiondead)",
				from.id, to.id, declared, *partitionDead)
		}
	}
}

// eventBetween returns when n's transport was told of an event of type
// kind about peer between since and until (zero: no end), if it was.
func (h *healScenario) eventBetween(n *nodeProc, peer, kind string, since, until time.Time) (time.Time, bool) {
	var events []memberEvent
	n.do(0, &events, "events %s", peer)
	for _, ev := range events {
		if ev.Type == kind && ev.At.After(since) && (until.IsZero() || ev.At.Before(until)) {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// recovery is how soon after the heal something got through one way.
type recovery struct {
	ok    bool
	after time.Duration // from the heal
	// For requests: how many began after the first success, and how many
	// of those failed.
	later, laterFailed int
}

func (r recovery) String() string {
	if !r.ok {
		return fmt.Sprintf("none within %v", recoveryWindow)
	}
	return ms(r.after).String()
}

// memberlistBack reports when n's memberlist reached peer again after the
// heal: the first probe of peer answered or alive message about it, and,
// if it had declared peer dead, the Join its transport was told of
// (before which the transport has no address for peer), whichever came
// later.
func (h *healScenario) memberlistBack(n *nodeProc, peer string) recovery {
	var contacts []contact
	n.do(0, &contacts, "contacts %s", peer)
	var r recovery
	for _, c := range contacts {
		if !c.At.Before(h.healAt) {
			r = recovery{ok: true, after: c.At.Sub(h.healAt)}
			break
		}
	}
	if !*partitionDead || !r.ok {
		return r
	}
	join, ok := h.eventBetween(n, peer, "join", h.healAt, time.Time{})
	if !ok {
		return recovery{}
	}
	r.after = max(r.after, join.Sub(h.healAt))
	return r
}

// requestsRecovered finds the first request of run that succeeded after
// the heal.
func (h *healScenario) requestsRecovered(run callsResult) recovery {
	var r recovery
	var first callRecord
	for _, c := range run.Log {
		if c.Class == "" && !c.End().Before(h.healAt) && (!r.ok || c.End().Before(first.End())) {
			r.ok, first = true, c
		}
	}
	if !r.ok {
		return r
	}
	r.after = first.End().Sub(h.healAt)
	for _, c := range run.Log {
		if c.Start.After(first.End()) {
			r.later++
			if c.Class != "" {
				r.laterFailed++
			}
		}
	}
	return r
}

// oneWayRecovered reports when the first message tagged tag reached n.
func (h *healScenario) oneWayRecovered(n *nodeProc, tag string) recovery {
	var arrivals map[string]arrival
	n.do(0, &arrivals, "arrivals")
	a, ok := arrivals[tag]
	if !ok {
		return recovery{}
	}
	return recovery{ok: true, after: a.First.Sub(h.healAt)}
}

// measure reports how soon each side reached the other again and traffic
// resumed, and checks the target against the transport.
func (h *healScenario) measure() {
	t := h.t
	back13 := h.memberlistBack(h.n1, "n3")
	back31 := h.memberlistBack(h.n3, "n1")
	req13 := h.requestsRecovered(h.runs["n1/rec-req"])
	req31 := h.requestsRecovered(h.runs["n3/rec-req"])
	oneWay13 := h.oneWayRecovered(h.n3, "rec-n1")
	oneWay31 := h.oneWayRecovered(h.n1, "rec-n3")

	declared := "suspected, not declared dead"
	if *partitionDead {
		declared = "declared dead, then rejoined"
	}
	figures := fmt.Sprintf("after the heal (%s partition of %v, n3 %s): memberlist reached n3 from n1 after %v, n1 from n3 after %v; "+
		"first request ok n1 → n3 after %v, n3 → n1 after %v; first one-way message n1 → n3 after %v, n3 → n1 after %v",
		h.by, *partitionHold, declared, back13, back31, req13, req31, oneWay13, oneWay31)
	t.Log(figures)
	if !back13.ok || !back31.ok {
		t.Fatalf("memberlist did not reach the other side again within %v of the heal, so the transport cannot be judged: %s", recoveryWindow, figures)
	}

	// A request n1 → n3 needs n1 to reach n3 and n3 to reach n1 (the
	// response travels on n3's own connection): memberlist's part ends
	// when it has done both.
	memberlistPart := max(back13.after, back31.after)
	for _, r := range []struct {
		what string
		rec  recovery
	}{{"n1 → n3", req13}, {"n3 → n1", req31}} {
		if r.rec.ok {
			t.Logf("requests %s: ok again %v after memberlist reached both sides; of the %d begun after the first success, %d failed",
				r.what, ms(r.rec.after-memberlistPart), r.rec.later, r.rec.laterFailed)
		}
	}
	if memberlistPart > memberlistShare {
		t.Logf("memberlist was slow: it took %v to reach both sides again (its share of the %v target is %v); "+
			"the transport is judged from that moment", ms(memberlistPart), healTarget, memberlistShare)
	}

	// The target, with whatever memberlist took beyond its share not
	// counted against the transport.
	allowed := healTarget + max(0, memberlistPart-memberlistShare)
	switch {
	case !req13.ok:
		t.Errorf("requests to the healed n3 did not succeed again within %v of the heal (target %v): %s", recoveryWindow, healTarget, figures)
	case req13.after > allowed:
		t.Errorf("requests to the healed n3 succeeded again only %v after the heal, %v after memberlist reached both sides "+
			"(target %v after the heal, memberlist's share %v): the transport was slow to resume; %s",
			ms(req13.after), ms(req13.after-memberlistPart), healTarget, memberlistShare, figures)
	}
	for _, r := range []struct {
		what string
		rec  recovery
	}{{"requests n3 → n1", req31}, {"one-way messages n1 → n3", oneWay13}, {"one-way messages n3 → n1", oneWay31}} {
		if !r.rec.ok {
			t.Errorf("%s did not get through within %v of the heal: %s", r.what, recoveryWindow, figures)
		}
	}
}

// account checks that every one-way message either side accepted has one
// counted outcome, written or dropped with a reason, and that none
// arrived twice.
func (h *healScenario) account() {
	t := h.t
	for _, side := range []struct {
		from, to *nodeProc
		base     statsResult
	}{{h.n1, h.n3, h.base13}, {h.n3, h.n1, h.base31}} {
		load, rec := h.runs[side.from.id+"/load-ow"], h.runs[side.from.id+"/rec-ow"]
		sends := mergeCalls(load, rec)
		accounted := waitAccounted(t, side.from, side.to.id, "large", side.base, sends)
		var received map[string]uint64
		side.to.do(0, &received, "received")
		lane, base := accounted.lane("large"), side.base.lane("large")
		t.Logf("one-way %s → %s: %d accepted (%d load, %d probes), %d refused %v; %d written, dropped %v; %s received %d load, %d probes",
			side.from.id, side.to.id, sends.OK, load.OK, rec.OK, sends.Failed, sends.ByClass,
			lane.Sent-base.Sent, lane.HookDropped, side.to.id, received["load-"+side.from.id], received["rec-"+side.from.id])
		for tag, accepted := range map[string]int{"load-" + side.from.id: load.OK, "rec-" + side.from.id: rec.OK} {
			if received[tag] > uint64(accepted) {
				t.Errorf("%s received %d %s messages; %s accepted %d: some were delivered twice", side.to.id, received[tag], tag, side.from.id, accepted)
			}
		}
	}
}
