package transport

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
)

// connCounters are one outbound lane's counters.
type connCounters struct {
	sent, sentBytes, writes   atomic.Uint64
	responses                 atomic.Uint64 // of sent: responses to the peer's requests
	connects, connectFailures atomic.Uint64
	dropped                   [NumReasons]atomic.Uint64
}

// inCounters are what arrived from one peer on one lane.
type inCounters struct {
	received, receivedBytes   atomic.Uint64
	throttled, throttledNanos atomic.Uint64
	dropped                   [NumReasons]atomic.Uint64
	remoteDropped             [NumReasons]atomic.Uint64
}

// ConnStats describes one lane with one peer: the outbound half (messages
// this node sent) and the inbound half (messages it received).
type ConnStats struct {
	Peer cluster.NodeID
	Lane routing.Lane

	// Outbound.
	MessagesSent    uint64 // messages written to the socket, responses included
	ResponsesSent   uint64 // of MessagesSent, responses to the peer's requests
	BytesSent       uint64 // their encoded bytes, frame headers excluded
	Writes          uint64 // vectored write calls
	PendingMessages uint64 // queued now
	PendingBytes    uint64 // queued now, plus taken by the writer and not yet written
	Connects        uint64 // connections established
	ConnectFailures uint64 // dial or handshake failures
	Connected       bool   // the lane has an established connection now
	// Dropped counts outbound messages that failed, by reason.
	Dropped [NumReasons]uint64
	// SendQueueMax and RecvQueueMax are the deepest socket send and
	// receive queues measured on this lane, in bytes, since the transport
	// started (the metrics report the peak per collection instead).
	SendQueueMax, RecvQueueMax int64
	// Coalescing is the lane's strategy's own account.
	Coalescing coalescing.Stats

	// Inbound.
	MessagesReceived uint64 // messages handed to a handler or a waiting request
	BytesReceived    uint64
	// DroppedInbound counts received messages that never reached a
	// handler, by reason.
	DroppedInbound [NumReasons]uint64
	// Throttled counts the times reading stopped for want of inbound
	// capacity (OverloadPause), and ThrottledTime how long in all.
	Throttled     uint64
	ThrottledTime time.Duration
	// RemoteDropped counts failures the peer reported for messages no
	// call was waiting for: one-way messages it rejected as overloaded, or
	// requests whose caller had already given up.
	RemoteDropped [NumReasons]uint64
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Conns []ConnStats // sorted by peer, then lane
	// InboundRefused counts handshakes this node refused or that failed.
	InboundRefused uint64
	// Refusals counts refused inbound connections by reason; their sum is
	// InboundRefused.
	Refusals [NumRefusals]uint64
	// InboundMalformed counts inbound connections closed because they
	// carried bytes that are not valid wire format.
	InboundMalformed uint64
	// InboundConnections is the number of accepted connections open now.
	InboundConnections int
	// OutboundBytes and InboundBytes are the node-wide reserves in use
	// now; with the per-connection capacities they bound the transport's
	// message memory (see Config.Outbound and Config.Inbound).
	OutboundBytes, InboundBytes int64
	// InboundHeld is every byte of inbound capacity held now: connections'
	// own capacity plus the node reserve in use. It never exceeds the
	// sum of the inbound limits.
	InboundHeld int64
	// File transfers completed and verified, and their bytes.
	FilesSent, FilesReceived         uint64
	FileBytesSent, FileBytesReceived uint64
}

// Total sums every connection's counters (Peer and Coalescing are left
// zero; the queue maxima are the largest of any lane).
func (s Stats) Total() ConnStats {
	var t ConnStats
	for _, c := range s.Conns {
		t.add(&c)
	}
	return t
}

// add sums o's counters into c.
func (c *ConnStats) add(o *ConnStats) {
	c.MessagesSent += o.MessagesSent
	c.ResponsesSent += o.ResponsesSent
	c.BytesSent += o.BytesSent
	c.Writes += o.Writes
	c.PendingMessages += o.PendingMessages
	c.PendingBytes += o.PendingBytes
	c.Connects += o.Connects
	c.ConnectFailures += o.ConnectFailures
	c.Connected = c.Connected || o.Connected
	c.MessagesReceived += o.MessagesReceived
	c.BytesReceived += o.BytesReceived
	c.Throttled += o.Throttled
	c.ThrottledTime += o.ThrottledTime
	c.SendQueueMax = max(c.SendQueueMax, o.SendQueueMax)
	c.RecvQueueMax = max(c.RecvQueueMax, o.RecvQueueMax)
	for r := range NumReasons {
		c.Dropped[r] += o.Dropped[r]
		c.DroppedInbound[r] += o.DroppedInbound[r]
		c.RemoteDropped[r] += o.RemoteDropped[r]
	}
}

// DroppedTotal sums Dropped over every reason.
func (c ConnStats) DroppedTotal() uint64 {
	var n uint64
	for _, d := range c.Dropped {
		n += d
	}
	return n
}

// Stats returns a snapshot of every lane's counters. Safe for concurrent
// use; the coalescing figures are read without stopping the writers and
// may be slightly stale.
func (t *Transport) Stats() Stats {
	t.peersMu.RLock()
	peers := make([]*peer, 0, len(t.peers)+len(t.departed))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	// Peers that left keep their counts: nothing they sent or received
	// drops out of the accounts.
	peers = append(peers, t.departed...)
	t.peersMu.RUnlock()
	s := Stats{InboundRefused: t.refused.Load(), InboundMalformed: t.malformed.Load()}
	for r := range NumRefusals {
		s.Refusals[r] = t.refusals[r].Load()
	}
	s.FilesSent, s.FilesReceived = t.filesSent.Load(), t.filesReceived.Load()
	s.FileBytesSent, s.FileBytesReceived = t.fileBytesSent.Load(), t.fileBytesReceived.Load()
	s.OutboundBytes = t.outReserve.Using()
	s.InboundBytes = t.inReserve.Using()
	s.InboundHeld = s.InboundBytes
	t.inboundMu.Lock()
	s.InboundConnections = len(t.inbound)
	for ic := range t.inConns {
		s.InboundHeld += ic.tiers.Own.Using()
	}
	t.inboundMu.Unlock()
	type key struct {
		peer cluster.NodeID
		lane routing.Lane
	}
	merged := map[key]int{} // index in s.Conns
	for _, p := range peers {
		for _, lane := range routing.Lanes {
			cs, ok := p.laneStats(lane)
			if !ok {
				continue
			}
			k := key{p.id, lane}
			if i, seen := merged[k]; seen {
				s.Conns[i].add(&cs)
				continue
			}
			merged[k] = len(s.Conns)
			s.Conns = append(s.Conns, cs)
		}
	}
	sort.Slice(s.Conns, func(i, j int) bool {
		a, b := s.Conns[i], s.Conns[j]
		return a.Peer < b.Peer || a.Peer == b.Peer && a.Lane < b.Lane
	})
	return s
}

// laneStats reads one lane's counters; ok is false for a lane that has
// seen no traffic either way.
func (p *peer) laneStats(lane routing.Lane) (cs ConnStats, ok bool) {
	cs = ConnStats{Peer: p.id, Lane: lane}
	in := &p.inbound[lane]
	cs.MessagesReceived = in.received.Load()
	cs.BytesReceived = in.receivedBytes.Load()
	cs.SendQueueMax = p.sendMax[lane].Max()
	cs.RecvQueueMax = p.recvMax[lane].Max()
	cs.Throttled = in.throttled.Load()
	cs.ThrottledTime = time.Duration(in.throttledNanos.Load())
	for r := range NumReasons {
		cs.DroppedInbound[r] = in.dropped[r].Load()
		cs.RemoteDropped[r] = in.remoteDropped[r].Load()
	}
	c := p.lanes[lane].Load()
	if c == nil {
		return cs, cs.MessagesReceived != 0 || cs.DroppedInbound != ([NumReasons]uint64{}) || cs.Throttled != 0
	}
	cs.MessagesSent = c.counters.sent.Load()
	cs.ResponsesSent = c.counters.responses.Load()
	cs.BytesSent = c.counters.sentBytes.Load()
	cs.Writes = c.counters.writes.Load()
	cs.Connects = c.counters.connects.Load()
	cs.ConnectFailures = c.counters.connectFailures.Load()
	cs.Connected = c.live.Load() != nil
	for r := range NumReasons {
		cs.Dropped[r] = c.counters.dropped[r].Load()
	}
	c.strategyMu.Lock()
	cs.Coalescing = c.strategy.Stats()
	c.strategyMu.Unlock()
	messages, _ := c.queue.pending()
	cs.PendingMessages = uint64(messages)
	cs.PendingBytes = uint64(c.queue.held())
	return cs, true
}
