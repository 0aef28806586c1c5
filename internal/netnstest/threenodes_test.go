package netnstest

import (
	"flag"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/internode/internode/transport"
)

// Bounds of the scenario. The measured figures are logged; these only fail
// a run that is far off.
const (
	formLimit      = 10 * time.Second       // three fresh nodes find each other
	detectLimit    = 15 * time.Second       // n1 drops n3 after its link is cut
	rejoinLimit    = 20 * time.Second       // n3 is back after its link returns
	quietLimit     = 3 * time.Second        // accepted one-way messages are accounted for
	deliverLimit   = 5 * time.Second        // one-way messages reach their handler
	cutTimeout     = time.Second            // per request during the cut
	longTimeout    = 10 * time.Second       // the request still waiting when n3 leaves
	timeoutSlack   = 300 * time.Millisecond // how late "within its timeout" may be
	failFastLimit  = 100 * time.Millisecond // "at once": a refusal that waits for nothing
	leaveLimit     = 500 * time.Millisecond // the transport handles a Leave; waiters fail
	pollInterval   = 50 * time.Millisecond
	requestTimeout = 2 * time.Second // per request while the network is whole
	largeSize      = 256 << 10       // above the 64 KiB threshold: the large lane
)

var (
	// cutHold is how long n3's link stays down at least. The default, like
	// a real outage, outlasts failure detection on both sides and
	// memberlist's retransmissions of the news; 0 restores the link as soon
	// as the checks of the cut are done.
	cutHold = flag.Duration("netns.cuthold", 5*time.Second, "keep n3's link down at least this long")
	// largeCount is how many large one-way messages n1 sends n3 during the
	// cut, on a lane that never connected: its writer must dial a peer
	// that cannot answer while n3 is being declared gone.
	largeCount = flag.Int("netns.large", 20, "large one-way messages sent during the cut (0: none)")
)

// TestNetnsThreeNodes runs three nodes in their own network namespaces,
// cuts n3's link and restores it; see the package documentation.
func TestNetnsThreeNodes(t *testing.T) {
	requireNetns(t)
	began := time.Now()
	s := newScenario(t, nodeOptions{})
	s.whole()
	s.cut()
	s.restore()
	quitting := time.Now()
	quitAll(t, s.nodes)
	t.Logf("quit: the nodes shut down and exited in %v; whole test %v", ms(time.Since(quitting)), ms(time.Since(began)))
}

// scenario is the state of TestNetnsThreeNodes between its phases.
type scenario struct {
	t          *testing.T
	lab        *lab
	n1, n2, n3 *nodeProc
	nodes      []*nodeProc
	everyone   []string
	cutAt      time.Time
	// One-way messages n1 had accepted for n3 during the cut, by tag.
	acceptedDuringCut map[string]int
}

// newScenario starts three nodes, n2 and n3 joining through n1, with opts,
// and waits until each lists all three.
func newScenario(t *testing.T, opts nodeOptions) *scenario {
	s := &scenario{t: t, lab: newLab(t, 3), everyone: []string{"n1", "n2", "n3"}, acceptedDuringCut: make(map[string]int)}
	seed := net.JoinHostPort(s.lab.nodeIP(1), strconv.Itoa(gossipPort))
	s.n1 = startNode(t, s.lab, 1, "", opts)
	s.n2 = startNode(t, s.lab, 2, seed, opts)
	s.n3 = startNode(t, s.lab, 3, seed, opts)
	s.nodes = []*nodeProc{s.n1, s.n2, s.n3}
	formed := waitMembers(t, s.nodes, s.everyone, formLimit)
	t.Logf("formed: every node lists %v %v after the last node started", s.everyone, ms(formed))
	return s
}

// whole checks that requests and one-way messages get through while the
// network is whole.
func (s *scenario) whole() {
	var requests, sends callsResult
	s.n1.do(20*requestTimeout, &requests, "request n3 20 %v", requestTimeout)
	requireAllOK(s.t, "n1 → n3 requests before the cut", requests, 20)
	s.n1.do(0, &sends, "send n3 50 5s before")
	requireAllOK(s.t, "n1 → n3 one-way before the cut", sends, 50)
	waitReceived(s.t, s.n3, "before", 50)
	s.t.Logf("before the cut: 20 requests ok (longest %v), 50 one-way messages received", requests.MaxOK)
}

// cut pulls n3's cable and checks how n1's calls to n3 fail, that n1's
// membership drops n3, and that every message n1 accepted for n3 has one
// counted outcome.
func (s *scenario) cut() {
	t, n1 := s.t, s.n1
	var base statsResult
	n1.do(0, &base, "stats n3")
	if !base.Present {
		t.Fatalf("n1's Stats do not list n3 after traffic to it: %+v", base)
	}
	s.lab.setPort(3, false)
	s.cutAt = time.Now()
	t.Logf("cut: n3's switch port is down")

	// One-way messages at once, before failure detection can act: the
	// small lane is connected, so the kernel takes them.
	var small callsResult
	n1.do(0, &small, "send n3 50 2s cut")
	requireFast(t, "one-way sends during the cut", small)
	s.acceptedDuringCut["cut"] = small.OK
	accounted := waitAccounted(t, n1, "n3", "small", base, small)
	t.Logf("one-way during the cut: %d accepted (longest Send %v), %d refused %v; n1's small lane to n3: %d written, dropped %v",
		small.OK, small.MaxOK, small.Failed, small.ByClass,
		accounted.lane("small").Sent-base.lane("small").Sent, accounted.lane("small").Dropped)

	// A request that is still waiting when n3 leaves, and large messages
	// for a lane that has never connected.
	n1.do(0, nil, "start long request n3 1 %v", longTimeout)
	var large callsResult
	var beforeLeave statsResult
	if *largeCount > 0 {
		n1.do(0, &large, "send n3 %d 10s cutlarge %d", *largeCount, largeSize)
		requireFast(t, "large one-way sends during the cut", large)
		s.acceptedDuringCut["cutlarge"] = large.OK
		n1.do(0, &beforeLeave, "stats n3")
		t.Logf("large one-way during the cut: %d accepted, %d refused %v; n1's large lane to n3: %d written, %d pending",
			large.OK, large.Failed, large.ByClass, beforeLeave.lane("large").Sent, beforeLeave.lane("large").Pending)
	}

	// Requests with a 1 s timeout until n1's membership drops n3: each
	// must fail within about its timeout.
	var during callsResult
	var polledGone time.Duration
	for {
		var r callsResult
		n1.do(cutTimeout, &r, "request n3 1 %v", cutTimeout)
		during = mergeCalls(during, r)
		var members []string
		n1.do(0, &members, "members")
		if !slices.Contains(members, "n3") {
			polledGone = time.Since(s.cutAt)
			break
		}
		if time.Since(s.cutAt) > detectLimit {
			t.Fatalf("n1 still lists n3 %v after its link was cut (members %v)", detectLimit, members)
		}
	}
	t.Logf("requests during the cut (timeout %v): %d, %d failed %v, durations %v; errors: %s",
		cutTimeout, during.Attempts, during.Failed, during.ByClass, msList(during.Durations), strings.Join(during.Errors, " | "))
	if during.OK != 0 {
		t.Errorf("%d requests to n3 succeeded with its link cut", during.OK)
	}
	if during.MaxFailed > cutTimeout+timeoutSlack {
		t.Errorf("a request to the cut n3 failed only after %v; its timeout was %v", during.MaxFailed, cutTimeout)
	}
	requireClasses(t, "requests during the cut", during,
		classDeadline, classExpired, classPeerLeft, classConnectionReset, classUnknownPeer)
	if during.NetTimeouts < during.ByClass[classDeadline] {
		t.Errorf("%d requests failed on their deadline but only %d errors are net.Error timeouts",
			during.ByClass[classDeadline], during.NetTimeouts)
	}

	// The long request must fail with "peer left" as soon as n1's
	// transport learns that n3 left.
	var long callsResult
	n1.do(longTimeout, &long, "wait long")
	leave := eventAfter(t, n1, "n3", "leave", s.cutAt)
	leaveN2 := eventAfter(t, s.n2, "n3", "leave", s.cutAt)
	t.Logf("detection: n1's membership reported n3's Leave %v after the cut (n2's: %v); polling saw n3 gone from n1's members after %v",
		ms(leave.At.Sub(s.cutAt)), ms(leaveN2.At.Sub(s.cutAt)), ms(polledGone))
	t.Logf("n1's transport took %v to handle n3's Leave (n2's: %v)", ms(leave.Took), ms(leaveN2.Took))
	if leave.Took > leaveLimit {
		t.Errorf("n1's transport took %v to handle n3's Leave (limit %v): memberlist's event delivery waited for it, "+
			"and requests waiting for n3 failed only afterwards", ms(leave.Took), leaveLimit)
	}
	longEnd := long.Started.Add(long.MaxFailed)
	t.Logf("request waiting when n3 left (timeout %v): failed %v after the cut, %v after n1's membership reported the Leave: %s",
		longTimeout, ms(longEnd.Sub(s.cutAt)), ms(longEnd.Sub(leave.At)), strings.Join(long.Errors, " | "))
	if long.OK != 0 || long.ByClass[classPeerLeft] != 1 {
		t.Errorf("the request waiting when n3 left: want it failed with ErrPeerLeft, got %d ok, failures %v: %s",
			long.OK, long.ByClass, strings.Join(long.Errors, " | "))
	} else if lag := longEnd.Sub(leave.At); lag > leaveLimit {
		t.Errorf("the request waiting when n3 left failed %v after n1's membership reported the Leave (limit %v)", ms(lag), leaveLimit)
	}

	s.afterLeave()
	s.accountAcrossLeave(base, beforeLeave, large)
}

// afterLeave checks that calls to n3 fail at once once n1 dropped it.
func (s *scenario) afterLeave() {
	t, n1 := s.t, s.n1
	var requests, sends callsResult
	n1.do(20*cutTimeout, &requests, "request n3 20 %v", cutTimeout)
	t.Logf("requests after n3 left: %d, %d failed %v, longest %v; errors: %s",
		requests.Attempts, requests.Failed, requests.ByClass, requests.MaxFailed, strings.Join(requests.Errors, " | "))
	if requests.OK != 0 {
		t.Errorf("%d requests to n3 succeeded after n1 dropped it", requests.OK)
	}
	if requests.MaxFailed > failFastLimit {
		t.Errorf("requests to the departed n3 took up to %v; they should fail at once (limit %v)", requests.MaxFailed, failFastLimit)
	}
	requireClasses(t, "requests after n3 left", requests, classUnknownPeer, classPeerLeft)
	n1.do(0, &sends, "send n3 10 2s gone")
	t.Logf("one-way after n3 left: %d refused %v, longest %v", sends.Failed, sends.ByClass, sends.MaxFailed)
	if sends.OK != 0 {
		t.Errorf("%d one-way sends to n3 accepted after n1 dropped it", sends.OK)
	}
	requireFast(t, "one-way sends after n3 left", sends)
	requireClasses(t, "one-way sends after n3 left", sends, classUnknownPeer, classPeerLeft)
}

// accountAcrossLeave checks that the large messages accepted during the cut
// each have one outcome, and that Stats shows the drops n3's leaving
// caused.
func (s *scenario) accountAcrossLeave(base, beforeLeave statsResult, large callsResult) {
	t, n1 := s.t, s.n1
	peerLeft := transport.ReasonPeerLeft.String()
	var after statsResult
	start := time.Now()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		n1.do(0, &after, "stats n3")
		outcomes := beforeLeave.lane("large").Sent - base.lane("large").Sent +
			sumCounts(after.lane("large").HookDropped) - sumCounts(base.lane("large").HookDropped)
		if outcomes >= uint64(large.OK) || time.Since(start) > quietLimit {
			break
		}
		<-ticker.C
	}
	var hookPeerLeft, hookTotal int64
	for lane, ls := range after.Lanes {
		hookPeerLeft += int64(ls.HookDropped[peerLeft]) - int64(base.lane(lane).HookDropped[peerLeft])
		hookTotal += int64(sumCounts(ls.HookDropped)) - int64(sumCounts(base.lane(lane).HookDropped))
	}
	statsPeerLeft := int64(after.NodeDropped[peerLeft]) - int64(base.NodeDropped[peerLeft])
	t.Logf("n1's account of n3 after it left: Stats list it: %v; OnDropped since the cut: %d (%d peer left); "+
		"Stats' node-wide peer-left drops since the cut: %d; large lane OnDropped %v",
		after.Present, hookTotal, hookPeerLeft, statsPeerLeft, after.lane("large").HookDropped)

	written := beforeLeave.lane("large").Sent - base.lane("large").Sent
	dropped := sumCounts(after.lane("large").HookDropped) - sumCounts(base.lane("large").HookDropped)
	if written+dropped != uint64(large.OK) {
		t.Errorf("%d large one-way messages accepted during the cut, but %d written + %d dropped (OnDropped) = %d outcomes",
			large.OK, written, dropped, written+dropped)
	}
	if statsPeerLeft < hookPeerLeft {
		t.Errorf("OnDropped reported %d messages dropped because n3 left, but Stats counts %d such drops on n1: "+
			"the outcome of %d messages is visible in no counter", hookPeerLeft, statsPeerLeft, hookPeerLeft-statsPeerLeft)
	}
}

// restore brings n3's link back after the hold and checks that n3 rejoins
// and traffic resumes.
func (s *scenario) restore() {
	t, n1, n3 := s.t, s.n1, s.n3
	time.Sleep(time.Until(s.cutAt.Add(*cutHold))) // the outage itself, not a wait for a goroutine
	s.lab.setPort(3, true)
	restoredAt := time.Now()
	t.Logf("restored: n3's switch port is up %v after the cut", ms(restoredAt.Sub(s.cutAt)))
	rejoined, views, ok := awaitMembers(t, s.nodes, s.everyone, rejoinLimit)
	if !ok {
		// memberlist probes and push-pulls only members it thinks alive,
		// and gossips to dead ones only while it has news to spread: once
		// both sides have declared the other dead and spread it, nothing
		// makes them talk again unless someone calls Join.
		t.Fatalf("n3 did not rejoin within %v after its link returned (outage %v): %s; "+
			"cluster/memberlist does not try to reach members it declared dead, so a partition that outlasts "+
			"failure detection on both sides does not heal", rejoinLimit, ms(restoredAt.Sub(s.cutAt)), views)
	}
	join := eventAfter(t, n1, "n3", "join", restoredAt)
	t.Logf("rejoin: every node lists all three %v after the link returned; n1 reported n3's Join after %v",
		ms(rejoined), ms(join.At.Sub(restoredAt)))

	var requests, sends callsResult
	n1.do(20*requestTimeout, &requests, "request n3 20 %v", requestTimeout)
	requireAllOK(t, "n1 → n3 requests after the link returned", requests, 20)
	n1.do(0, &sends, "send n3 50 5s after")
	requireAllOK(t, "n1 → n3 one-way after the link returned", sends, 50)
	received := waitReceived(t, n3, "after", 50)
	var fromN1 statsResult
	n3.do(0, &fromN1, "stats n1")
	inboundDrops := make(map[string]map[string]uint64)
	for lane, ls := range fromN1.Lanes {
		if len(ls.DroppedInbound) > 0 {
			inboundDrops[lane] = ls.DroppedInbound
		}
	}
	t.Logf("after recovery: 20 requests ok (longest %v); one-way messages n3 received, by tag: %v; n3's inbound drops from n1: %v",
		requests.MaxOK, received, inboundDrops)
	// Delivery is at most once (see the transport's documentation): what
	// the kernel took before the peer was declared gone is counted as
	// written by the sender and may never arrive.
	for tag, accepted := range s.acceptedDuringCut {
		t.Logf("one-way messages n1 accepted during the cut (tag %s) that n3 received: %d of %d", tag, received[tag], accepted)
		if received[tag] > uint64(accepted) {
			t.Errorf("n3 received %d %s messages; n1 accepted %d: some were delivered twice", received[tag], tag, accepted)
		}
	}
}
