package coalescing

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readArrivals reads a recorded arrival trace (testdata/*.arrivals.gz, as
// examples/bench's link -record writes them, gzipped): comment lines, then
// one arrival a line, "gap_ns size", the gap from the arrival before (in
// queue order: negative when a producer stamped its message before the one
// queued ahead of it).
func readArrivals(tb testing.TB, path string) []arrival {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var arrivals []arrival
	at := t0
	sc := bufio.NewScanner(z)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var gap int64
		var size int
		if _, err := fmt.Sscan(line, &gap, &size); err != nil || size < 0 {
			tb.Fatalf("%s: bad line %q: %v", path, line, err)
		}
		at = at.Add(time.Duration(gap))
		arrivals = append(arrivals, arrival{at: at, size: size})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return arrivals
}

// replay is what one strategy made of a recorded trace.
type replay struct {
	asks     []ask
	writes   []write
	packets  int           // of at most recordedMSS bytes, each write's frame header (12 bytes) counted
	latency  time.Duration // mean, enqueue to written
	longest  time.Duration // longest observed wait
	messages int
}

// recordedMSS is the link's segment size when the traces were recorded.
const recordedMSS = 1448

func replayTrace(s Strategy, arrivals []arrival) replay {
	r := replay{messages: len(arrivals)}
	r.asks, r.writes = simulateWriter(s, arrivals, us(10))
	var latency time.Duration
	for _, w := range r.writes {
		r.packets += (w.bytes + 12 + recordedMSS - 1) / recordedMSS
		latency += w.latency
		r.longest = max(r.longest, w.observed)
	}
	r.latency = latency / time.Duration(len(arrivals))
	return r
}

func (r replay) packetsPerMessage() float64 { return float64(r.packets) / float64(r.messages) }

// TestAdaptiveRecordedTraces replays arrival traces recorded on the bench's
// packet-capped link (examples/bench: link -topology router -workloads
// rr16,rr64,ow1.5x,ow500 -systems adaptive -record DIR; of each, the
// 10 001st to 30 000th arrival, past the connection's start, and all 1255
// of ow500) through Adaptive, Disabled and Fixed, the way the transport's
// writer drives them.
// Open-loop recordings replay faithfully. The closed-loop ones (rr16,
// rr64) replay without their feedback — written sooner, a request's
// answer would not come sooner here — so they test how Adaptive batches
// real bursts, not the loop's rate.
//
//   - 500 msgs/s (sparse): Adaptive never waits, and every message sees
//     the latency it sees with Disabled.
//   - one-way at 1.5× the link's packet rate, and request/response at 16
//     and 64 in flight: Adaptive writes at most half Disabled's packets a
//     message and at most 1.25× Fixed's, waits no longer than its
//     MaxWindow, and adds on average less than MaxWindow.
func TestAdaptiveRecordedTraces(t *testing.T) {
	for _, name := range []string{"router-ow500", "router-ow15000", "router-rr16", "router-rr64"} {
		t.Run(name, func(t *testing.T) {
			arrivals := readArrivals(t, "testdata/"+name+".arrivals.gz")
			require.NotEmpty(t, arrivals)
			adaptive := replayTrace(NewAdaptive(AdaptiveConfig{}), arrivals)
			disabled := replayTrace(NewDisabled(), arrivals)
			fixed := replayTrace(NewFixed(DefaultWindow), arrivals)
			t.Logf("packets a message: adaptive %.3f, disabled %.3f, fixed %.3f; mean latency: adaptive %v, disabled %v, fixed %v",
				adaptive.packetsPerMessage(), disabled.packetsPerMessage(), fixed.packetsPerMessage(),
				adaptive.latency, disabled.latency, fixed.latency)
			if name == "router-ow500" {
				for i, a := range adaptive.asks {
					require.Zero(t, a.answer, "ask %d", i)
				}
				require.Len(t, adaptive.writes, len(disabled.writes))
				for i := range adaptive.writes {
					require.Equal(t, disabled.writes[i].latency, adaptive.writes[i].latency, "write %d", i)
				}
				return
			}
			assert.LessOrEqual(t, adaptive.packetsPerMessage(), 0.5*disabled.packetsPerMessage())
			assert.LessOrEqual(t, adaptive.packetsPerMessage(), 1.25*fixed.packetsPerMessage())
			assert.LessOrEqual(t, adaptive.longest, DefaultWindow)
			assert.Less(t, adaptive.latency, DefaultWindow)
		})
	}
}
