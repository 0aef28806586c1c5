package netnstest

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Targets and shape of TestNetnsPacketsPerExchange.
const (
	// packetsTarget is the target: at light load, a request and its
	// response cost at most this many packets on the link, both
	// directions, ACKs included. Plain TCP with one exchange in flight
	// needs two: the request and the response, each carrying the ACK of
	// the other.
	packetsTarget = 2.2
	// rawLow and rawHigh bound what the plain TCP baseline may measure;
	// outside them the measurement, not the transport, is off.
	rawLow, rawHigh = 1.9, 2.1

	exchangeCount    = 2000 // per run
	loadedInflight   = 16   // exchanges in flight in the loaded run
	warmupExchanges  = 100  // before measuring: every connection dialled, both ways
	exchangeRunLimit = 10 * time.Second
	// minIdleWindow is the shortest idle window the background is
	// measured over: memberlist pushes and pulls state every second, in
	// bursts, so a shorter window would catch one or none by chance.
	minIdleWindow = 2 * time.Second
)

// TestNetnsPacketsPerExchange counts the packets a request/response
// exchange costs on the link between two nodes, at light load (one
// exchange in flight) against packetsTarget, and under load and over plain
// TCP for reference; see the package documentation.
func TestNetnsPacketsPerExchange(t *testing.T) {
	requireNetns(t)
	began := time.Now()
	l := newLab(t, 2)
	n1 := startNode(t, l, 1, "", nodeOptions{})
	n2 := startNode(t, l, 2, net.JoinHostPort(l.nodeIP(1), strconv.Itoa(gossipPort)), nodeOptions{})
	nodes := []*nodeProc{n1, n2}
	formed := waitMembers(t, nodes, []string{"n1", "n2"}, formLimit)
	t.Logf("formed: both nodes list each other %v after n2 started", ms(formed))
	var rawAddr string
	n2.do(0, &rawAddr, "rawserve")

	// Every connection the exchanges use, dialled before counting: n1's
	// to n2 for requests and whatever carries the responses back.
	var warmup exchangeResult
	n1.do(exchangeRunLimit, &warmup, "exchange n2 %d 1 %d %v", warmupExchanges, requestSize, requestTimeout)
	requireAllOK(t, "warm-up exchanges", warmup.Calls, warmupExchanges)

	light := runExchanges(t, n1, "internode, 1 in flight", "exchange n2 %d 1 %d %v", exchangeCount, requestSize, requestTimeout)
	background := measureBackground(t, n1, max(light.took(), minIdleWindow))
	loaded := runExchanges(t, n1, fmt.Sprintf("internode, %d in flight", loadedInflight),
		"exchange n2 %d %d %d %v", exchangeCount, loadedInflight, requestSize, requestTimeout)
	raw := runExchanges(t, n1, "plain TCP echo, 1 in flight", "rawecho %s %d 1 %d %v", rawAddr, exchangeCount, requestSize, requestTimeout)

	t.Logf("background on n1's %s, idle, over %v: %d packets out, %d in (%.1f/s out, %.1f/s in)",
		nodeLink, ms(background.window), background.tx, background.rx, background.txRate(), background.rxRate())
	for _, run := range []exchangeRun{light, loaded, raw} {
		t.Log(run.report(background))
	}
	lightPackets, rawPackets := light.perExchange(background), raw.perExchange(background)
	t.Logf("packets per exchange at light load: internode %.3f, plain TCP %.3f (target: internode ≤ %.1f)",
		lightPackets, rawPackets, packetsTarget)
	if rawPackets < rawLow || rawPackets > rawHigh {
		t.Errorf("the plain TCP baseline measured %.3f packets per exchange, outside [%.1f, %.1f]: the measurement is off, not only the transport",
			rawPackets, rawLow, rawHigh)
	}
	if lightPackets > packetsTarget {
		t.Errorf("internode: %.3f packets per exchange at light load, above the target of %.1f (plain TCP: %.3f)",
			lightPackets, packetsTarget, rawPackets)
	}

	quitting := time.Now()
	quitAll(t, nodes)
	t.Logf("quit: the nodes shut down and exited in %v; whole test %v", ms(time.Since(quitting)), ms(time.Since(began)))
}

// exchangeRun is one run of exchanges as the requester's interface saw it.
type exchangeRun struct {
	name string
	exchangeResult
}

// runExchanges has n run the exchange or rawecho command given by format
// and args, whose count is count, and checks that every exchange
// succeeded.
func runExchanges(t *testing.T, n *nodeProc, name, format string, args ...any) exchangeRun {
	t.Helper()
	r := exchangeRun{name: name}
	n.do(exchangeRunLimit, &r.exchangeResult, format, args...)
	requireAllOK(t, name, r.Calls, exchangeCount)
	return r
}

func (r exchangeRun) took() time.Duration { return r.After.At.Sub(r.Before.At) }

func (r exchangeRun) exchanges() int { return r.Calls.OK }

// packets returns the packets the requester's interface sent and
// received during the run, less the background expected over as long.
func (r exchangeRun) packets(bg linkBackground) (out, in float64) {
	secs := r.took().Seconds()
	out = float64(r.After.TxPackets-r.Before.TxPackets) - bg.txRate()*secs
	in = float64(r.After.RxPackets-r.Before.RxPackets) - bg.rxRate()*secs
	return out, in
}

func (r exchangeRun) perExchange(bg linkBackground) float64 {
	out, in := r.packets(bg)
	return (out + in) / float64(r.exchanges())
}

func (r exchangeRun) report(bg linkBackground) string {
	secs := r.took().Seconds()
	out, in := r.packets(bg)
	count := float64(r.exchanges())
	bytes := float64(r.After.TxBytes-r.Before.TxBytes+r.After.RxBytes-r.Before.RxBytes) -
		(bg.txByteRate()+bg.rxByteRate())*secs
	return fmt.Sprintf("%s: %d exchanges of %d B in %v (median %v): n1 sent %d packets and received %d; "+
		"less the background (%.1f out, %.1f in) %.3f packets per exchange (%.3f out, %.3f in), %.0f bytes",
		r.name, r.exchanges(), requestSize, ms(r.took()), ms(median(r.Calls.Durations)),
		r.After.TxPackets-r.Before.TxPackets, r.After.RxPackets-r.Before.RxPackets,
		bg.txRate()*secs, bg.rxRate()*secs, (out+in)/count, out/count, in/count, bytes/count)
}

// linkBackground is what a node's interface carries while the node makes
// no exchange: memberlist's probes and push/pull, the transport's
// keepalives.
type linkBackground struct {
	window           time.Duration
	tx, rx           uint64 // packets
	txBytes, rxBytes uint64
}

func (b linkBackground) txRate() float64     { return float64(b.tx) / b.window.Seconds() }
func (b linkBackground) rxRate() float64     { return float64(b.rx) / b.window.Seconds() }
func (b linkBackground) txByteRate() float64 { return float64(b.txBytes) / b.window.Seconds() }
func (b linkBackground) rxByteRate() float64 { return float64(b.rxBytes) / b.window.Seconds() }

// measureBackground counts what n's interface carries over an idle window
// of about window.
func measureBackground(t *testing.T, n *nodeProc, window time.Duration) linkBackground {
	t.Helper()
	var before, after linkCounters
	n.do(0, &before, "counters")
	time.Sleep(window) // the idle window itself, not a wait for a goroutine
	n.do(0, &after, "counters")
	return linkBackground{
		window:  after.At.Sub(before.At),
		tx:      after.TxPackets - before.TxPackets,
		rx:      after.RxPackets - before.RxPackets,
		txBytes: after.TxBytes - before.TxBytes,
		rxBytes: after.RxBytes - before.RxBytes,
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}
