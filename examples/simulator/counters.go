package main

import (
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// laneTotals are one lane's transport counters summed over peers (and
// over a node's incarnations, or over nodes).
type laneTotals struct {
	sent, bytes, writes   uint64 // outbound: written
	responses             uint64 // of sent, responses to peers' requests
	dropped               [transport.NumReasons]uint64
	pendingBytes          uint64 // now
	connects, connectFail uint64
	received              uint64 // inbound: handed to a handler or a waiting request
	droppedInbound        [transport.NumReasons]uint64
	remoteDropped         uint64 // failure reports from peers for calls no longer waiting
	throttled             uint64 // times reading paused for want of inbound capacity
	throttledTime         time.Duration
}

func (l *laneTotals) addConn(c *transport.ConnStats) {
	l.sent += c.MessagesSent
	l.responses += c.ResponsesSent
	l.bytes += c.BytesSent
	l.writes += c.Writes
	l.pendingBytes += c.PendingBytes
	l.connects += c.Connects
	l.connectFail += c.ConnectFailures
	l.received += c.MessagesReceived
	l.throttled += c.Throttled
	l.throttledTime += c.ThrottledTime
	for r := range transport.NumReasons {
		l.dropped[r] += c.Dropped[r]
		l.droppedInbound[r] += c.DroppedInbound[r]
		l.remoteDropped += c.RemoteDropped[r]
	}
}

func (l *laneTotals) add(o *laneTotals) {
	l.sent += o.sent
	l.responses += o.responses
	l.bytes += o.bytes
	l.writes += o.writes
	l.pendingBytes += o.pendingBytes
	l.connects += o.connects
	l.connectFail += o.connectFail
	l.received += o.received
	l.throttled += o.throttled
	l.throttledTime += o.throttledTime
	l.remoteDropped += o.remoteDropped
	for r := range transport.NumReasons {
		l.dropped[r] += o.dropped[r]
		l.droppedInbound[r] += o.droppedInbound[r]
	}
}

func (l *laneTotals) droppedTotal() uint64 {
	var n uint64
	for _, d := range l.dropped {
		n += d
	}
	return n
}

type lanes [routing.NumLanes]laneTotals

// totalsOf sums a node's Stats (one per incarnation) by lane. Pending bytes
// are taken from the running incarnation only (up: the last Stats).
func totalsOf(all []transport.Stats, up bool) lanes {
	var t lanes
	for i, s := range all {
		for _, c := range s.Conns {
			lt := laneTotals{}
			lt.addConn(&c)
			if !up || i != len(all)-1 {
				lt.pendingBytes = 0 // a closed incarnation holds nothing
			}
			t[c.Lane].add(&lt)
		}
	}
	return t
}

// inboundFrom sums, over a node's Stats, what it received from each peer
// on each lane: messages handed to handlers, and dropped.
func inboundFrom(all []transport.Stats) map[cluster.NodeID]*lanes {
	by := map[cluster.NodeID]*lanes{}
	for _, s := range all {
		for _, c := range s.Conns {
			l := by[c.Peer]
			if l == nil {
				l = &lanes{}
				by[c.Peer] = l
			}
			l[c.Lane].received += c.MessagesReceived
			for r := range transport.NumReasons {
				l[c.Lane].droppedInbound[r] += c.DroppedInbound[r]
			}
		}
	}
	return by
}
