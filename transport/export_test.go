package transport

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/kernelstat"
	"github.com/internode/internode/routing"
)

// WarnCounter returns a log handler that counts the records at warning
// level and above in n.
func WarnCounter(n *atomic.Int64) slog.Handler { return countLevel{n} }

// RandomPayload returns n incompressible bytes, the same for the same
// seed.
var RandomPayload = randomPayload

// LetStalledStreamsCongest lifts the bound on a session's streams
// (StreamConfig.sessionStreams), so that streams whose readers stop can
// fill the session's buffer and congest it, for tests of what happens
// behind a congested session.
func LetStalledStreamsCongest(cfg *Config) { cfg.Streams.stallable = true }

// SetClockSkew makes t tell its peers a wall time off by d, as a node
// whose clock is wrong would (for tests in package transport_test).
func SetClockSkew(t *Transport, d time.Duration) { t.clock.skew = d }

// RecordRequestDuration, RecordFlush and RecordStageWait record one value
// in t's histograms as the transport does (request durations and stage
// waits under verb, flushes under peer), so that tests can check the
// buckets with distributions they know.
func RecordRequestDuration(t *Transport, verb string, d time.Duration) {
	t.tel.recordRequest(verb, d)
}

func RecordFlush(t *Transport, peer string, messages int, waited time.Duration) {
	t.tel.recordFlush([]metric.RecordOption{metric.WithAttributes(attribute.String("peer", peer))}, messages, waited)
}

func RecordStageWait(t *Transport, verb string, d time.Duration) {
	t.tel.stages.recordWait(verb, d)
}

// SetKernelCounters makes the transports' metrics report c as the
// kernel's counters until restore is called.
func SetKernelCounters(c kernelstat.Counters) (restore func()) {
	saved := readKernelCounters
	readKernelCounters = func() (kernelstat.Counters, error) { return c, nil }
	return func() { readKernelCounters = saved }
}

// SetCallerWriteIdle sets how long a lane must be quiet before a producer
// writes its own message (callerWriteIdle); zero lets tests exercise those
// writes without waiting. Call it before t carries any message.
func SetCallerWriteIdle(t *Transport, d time.Duration) { t.quietFor = d }

// SetSpanlessRecheck sets how long t's requests skip their spans once its
// tracer made one with nothing behind it (startRequestSpan).
func SetSpanlessRecheck(t *Transport, d time.Duration) { t.tel.spanlessRecheck = d }

// StreamReadAhead returns how many of the peer's bytes s holds read
// ahead of Read, or -1 on a stream that is not read ahead (on a
// connection of its own).
func StreamReadAhead(s *Stream) int {
	ra := s.ahead
	if ra == nil {
		return -1
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.end - ra.start
}

// StreamReadAheadGrowth returns how far s's read-ahead buffer has grown
// past aheadBase, how much of its peer's read-ahead allowance is taken
// (the growth of every stream with the peer, both ways), and whether its
// read-ahead read the stream's end.
func StreamReadAheadGrowth(s *Stream) (grown int, allowed int64, ended bool) {
	ra := s.ahead
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return max(len(ra.buf)-aheadBase, 0), ra.allowance.used.Load(), ra.err != nil
}

// DialLane dials t's connection of lane to id, as its writer would, and
// returns it after the handshakes.
func DialLane(ctx context.Context, t *Transport, id cluster.NodeID, lane routing.Lane) (net.Conn, error) {
	return t.dial(ctx, id, uint8(lane))
}

// RecvQueueDepth reads, from the sockets now, the deepest receive queue
// of t's inbound connections from peer on lane (0 when there are none,
// or none can be asked).
func RecvQueueDepth(t *Transport, peer cluster.NodeID, lane routing.Lane) int {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	depth := 0
	for ic := range t.inConns {
		if ic.from != peer || ic.lane != lane || ic.probe == nil {
			continue
		}
		if n, err := ic.probe.RecvQueue(); err == nil {
			depth = max(depth, n)
		}
	}
	return depth
}

// SendQueueDepth reads, from the socket now, the send queue of t's
// connection to peer on lane (0 when there is none, or it cannot be
// asked).
func SendQueueDepth(t *Transport, peer cluster.NodeID, lane routing.Lane) int {
	p := t.peerStats(peer)
	if p == nil {
		return 0
	}
	c := p.lanes[lane].Load()
	if c == nil {
		return 0
	}
	lc := c.live.Load()
	if lc == nil || lc.probe == nil {
		return 0
	}
	n, _ := lc.probe.SendQueue()
	return n
}

// QueuedRequests returns how many requests wait in the queue of lane to
// peer to, not yet taken by its writer.
func QueuedRequests(t *Transport, to cluster.NodeID, lane routing.Lane) int {
	p := (*t.peersView.Load())[to]
	if p == nil {
		return 0
	}
	c := p.lanes[lane].Load()
	if c == nil {
		return 0
	}
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	n := 0
	for _, seg := range c.queue.segments {
		for i := range seg.items {
			if seg.items[i].isRequest {
				n++
			}
		}
	}
	return n
}

// LaneWriter reports whether t's lane to peer has a writer goroutine,
// and whether it has a connection open: a parked writer (parkIdle) has
// none while its connection stays open.
func LaneWriter(t *Transport, peer cluster.NodeID, lane routing.Lane) (running, connected bool) {
	p := t.peerStats(peer)
	if p == nil {
		return false, false
	}
	c := p.lanes[lane].Load()
	if c == nil {
		return false, false
	}
	return c.running.Load(), c.live.Load() != nil
}
