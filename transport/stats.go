package transport

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
)

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
	CallerWrites    uint64 // of Writes, those made by the message's own goroutine on an idle lane (no hand-off to the writer)
	PendingMessages uint64 // queued now, responses to the peer's requests included; on the large lane, also those begun or waiting to begin, not yet written in full
	PendingBytes    uint64 // queued now, responses included, plus taken by the writer and not yet written
	Connects        uint64 // connections established
	ConnectFailures uint64 // dial or handshake failures
	Connected       bool   // the lane has an established connection now
	// Dropped counts outbound messages that failed, by reason.
	Dropped [NumReasons]uint64
	// SendQueueMax and RecvQueueMax are the deepest socket send and
	// receive queues measured on this lane, in bytes, since the transport
	// started (the metrics report the peak per collection instead). They
	// are measured after writes and reads, while a reader pauses for
	// capacity, and at each metrics collection: a write blocked on a peer
	// that stopped reading, or a reader blocked in an Inline handler,
	// shows its queue here once metrics are collected. The send queues of
	// the connections the lane's responses go back on (the peer's own)
	// are read at collection only.
	SendQueueMax, RecvQueueMax int64
	// QueuesMeasured says whether SendQueueMax and RecvQueueMax hold
	// readings: false while none was taken, because measuring is off
	// (Telemetry.DisableSocketMeasurement) or the lane's connections have
	// no kernel socket to ask (an in-memory Config.Dialer or Listen).
	QueuesMeasured bool
	// Coalescing is the lane's strategy's own account.
	Coalescing coalescing.Stats
	// Compression of the batch frames this node wrote (see
	// LaneConfig.Compression): frames sent compressed, and their payload
	// bytes before and after; frames sent uncompressed on connections
	// that compress (too small, skipped by CompressionAuto, or did not
	// shrink), and of those the ones tried in vain.
	CompressedFrames                      uint64
	CompressionIn, CompressionOut         uint64
	CompressionSkipped, CompressionMisses uint64

	// Inbound.
	MessagesReceived uint64 // messages handed to a handler or a waiting request
	BytesReceived    uint64
	// CompressedFramesReceived counts the batch frames that arrived
	// compressed.
	CompressedFramesReceived uint64
	// HandlerErrors counts the one-way messages of MessagesReceived whose
	// handler returned an error, panicked or ended its goroutine with
	// runtime.Goexit (a request's error goes back to its sender
	// instead); metric internode.messages.handler_errors.
	HandlerErrors uint64
	// DroppedInbound counts received messages that never reached a
	// handler, by reason: each arriving message is counted once, in
	// MessagesReceived or here. A large message whose connection ended
	// before any part of it came is not counted: its sender sends it
	// again on its next connection, or counts it in Dropped. One begun
	// again after a refusal its sender had not read when the connection
	// ended is refused again as it was, and not counted again.
	DroppedInbound [NumReasons]uint64
	// Throttled counts the waits for inbound capacity (OverloadPause): a
	// reader that stopped reading, or a large message whose grant waited
	// while its connection read on; and under OverloadReject, a reader
	// that stopped reading while other rejected compressed frames held
	// the room the node gives them (see the package documentation).
	// ThrottledTime is how long readers stopped, in all, pauses in
	// progress included.
	Throttled     uint64
	ThrottledTime time.Duration
	// RemoteDropped counts failures the peer reported for messages no
	// call was waiting for: one-way messages of batch frames (urgent and
	// small lanes) it rejected as overloaded, or requests whose caller
	// had already given up; a large one-way message the peer refuses is
	// never written, and is counted in Dropped instead; metric
	// internode.messages.remote_dropped.
	RemoteDropped [NumReasons]uint64
}

// PeerStats is what the node holds for one peer now.
type PeerStats struct {
	Peer cluster.NodeID
	// Member says whether the membership knew the peer when the node
	// first saw it; a peer that is not a member is forgotten once quiet.
	Member bool
	// OutboundHeld and InboundHeld are the bytes held for the peer's
	// messages in each direction, all its connections together: never
	// above the PerPeer limits.
	OutboundHeld, InboundHeld int64
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	// Conns is sorted by peer, then lane. Peers that left keep their
	// entries, the latest 256 of those that did not come back under their
	// IDs, the others summed under DepartedPeer.
	Conns []ConnStats
	// Peers lists the peers the node knows now, sorted by ID.
	Peers []PeerStats
	// InboundRefused counts handshakes this node refused or that failed.
	InboundRefused uint64
	// Refusals counts refused inbound connections by reason; their sum is
	// InboundRefused.
	Refusals [NumRefusals]uint64
	// InboundProbes counts inbound connections that closed before
	// sending a byte: port probes, load balancers' health checks. They
	// are neither refusals nor bad input.
	InboundProbes uint64
	// InboundMalformed counts inbound connections closed because they
	// carried bad input (the sum of BadInput).
	InboundMalformed uint64
	// BadInput counts those connections by what was wrong.
	BadInput [numBadInputs]uint64
	// InboundConnections is the number of accepted connections open now,
	// handshaken or not.
	InboundConnections int
	// OutboundBytes and InboundHeld are the bytes the node holds for
	// messages now in each direction, buffers included; they never exceed
	// the Node limits (Config.Memory.Outbound, Config.Memory.Inbound). InboundBytes is
	// InboundHeld, under its former name.
	OutboundBytes, InboundBytes, InboundHeld int64
	// OutboundWaiters and InboundWaiters count the allocations waiting
	// for capacity now, in each direction: Sends with WaitForCapacity,
	// paused readers, large messages waiting for a grant.
	OutboundWaiters, InboundWaiters int
	// File transfers completed and verified, and their bytes.
	FilesSent, FilesReceived         uint64
	FileBytesSent, FileBytesReceived uint64
	// FileSendFailures counts the SendFile calls that returned an error,
	// and FileReceiveFailures the transfers this node refused or failed
	// once their header was read (the sender learns why): every
	// SendFile is counted once, in FilesSent or FileSendFailures, and
	// every transfer received in FilesReceived or FileReceiveFailures.
	// A header that is not valid wire format is counted in BadInput.
	FileSendFailures, FileReceiveFailures uint64
	// Streams: each OpenStream call is counted once, in StreamsOpened or
	// StreamOpenFailures; each stream a peer opened, once, in
	// StreamsAccepted (its handler ran) or StreamsRefused (unknown verb,
	// over Streams.MaxPerPeer or the session's bound, shutting down, a
	// peer that is not a member, or an opening that did not finish within
	// Timeouts.Handshake), except an opening that is not valid wire
	// format, counted in BadInput; a stream connection (a session, or a
	// connection of its own) refused at its handshake is a refused
	// connection (Refusals), its streams never opened. StreamBytesSent and
	// StreamBytesReceived are the bytes the streams' Writes and Reads
	// moved, on both kinds of stream.
	StreamsOpened, StreamOpenFailures    uint64
	StreamsAccepted, StreamsRefused      uint64
	StreamBytesSent, StreamBytesReceived uint64
	// Stages describes the stage of each verb handled with one (all but
	// Ordered and Inline verbs), sorted by verb. A verb has one stage
	// for as long as the transport runs: a new Handle keeps it, with the
	// new bounds, and its counters; one removed (Handle with nil) stays
	// here.
	Stages []StageStats
}

// Total sums every connection's counters (Peer, Lane and Coalescing are
// left zero; the queue maxima are the largest of any lane).
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
	c.CallerWrites += o.CallerWrites
	c.PendingMessages += o.PendingMessages
	c.PendingBytes += o.PendingBytes
	c.Connects += o.Connects
	c.ConnectFailures += o.ConnectFailures
	c.Connected = c.Connected || o.Connected
	c.MessagesReceived += o.MessagesReceived
	c.BytesReceived += o.BytesReceived
	c.CompressedFrames += o.CompressedFrames
	c.CompressionIn += o.CompressionIn
	c.CompressionOut += o.CompressionOut
	c.CompressionSkipped += o.CompressionSkipped
	c.CompressionMisses += o.CompressionMisses
	c.CompressedFramesReceived += o.CompressedFramesReceived
	c.HandlerErrors += o.HandlerErrors
	c.Throttled += o.Throttled
	c.ThrottledTime += o.ThrottledTime
	c.SendQueueMax = max(c.SendQueueMax, o.SendQueueMax)
	c.RecvQueueMax = max(c.RecvQueueMax, o.RecvQueueMax)
	c.QueuesMeasured = c.QueuesMeasured || o.QueuesMeasured
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
	// Held throughout, so that a stranger being forgotten is counted once:
	// as a peer, or in the strangers' totals.
	t.peersMu.RLock()
	defer t.peersMu.RUnlock()
	peers := make([]*peer, 0, len(t.peers)+len(t.departed))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	// Peers that left keep their counts: nothing they sent or received
	// drops out of the accounts.
	departed := t.departed
	// Latest first: an ID's entries merge into one ConnStats whose
	// Coalescing (not summed) is the first merged's, the live entry's or
	// else the latest departed one's, which the earlier ones, still busy,
	// are folded into once quiet (pruneDeparted).
	for i := len(departed) - 1; i >= 0; i-- {
		peers = append(peers, departed[i])
	}
	s := Stats{Stages: t.stageStats()}
	for r := range NumRefusals {
		s.Refusals[r] = t.refusals[r].Load()
		s.InboundRefused += s.Refusals[r] // their sum, read once
	}
	s.InboundProbes = t.probes.Load()
	for b := range numBadInputs {
		s.BadInput[b] = t.malformed[b].Load()
		s.InboundMalformed += s.BadInput[b]
	}
	s.FilesSent, s.FilesReceived = t.filesSent.Load(), t.filesReceived.Load()
	s.FileBytesSent, s.FileBytesReceived = t.fileBytesSent.Load(), t.fileBytesReceived.Load()
	s.FileSendFailures, s.FileReceiveFailures = t.fileSendFailures.Load(), t.fileReceiveFailures.Load()
	s.StreamsOpened, s.StreamOpenFailures = t.streamsOpened.Load(), t.streamOpenFailures.Load()
	s.StreamsAccepted, s.StreamsRefused = t.streamsAccepted.Load(), t.streamsRefused.Load()
	s.StreamBytesSent, s.StreamBytesReceived = t.streamBytesSent.Load(), t.streamBytesReceived.Load()
	s.OutboundBytes = t.outBudget.Root().Used()
	s.InboundHeld = t.inBudget.Root().Used()
	s.InboundBytes = s.InboundHeld
	s.OutboundWaiters, s.InboundWaiters = t.outBudget.Waiting(), t.inBudget.Waiting()
	// The responses queued on the peers' own connections, to be written
	// back on them: pending on their lanes as much as the lanes' own
	// messages.
	type peerLane struct {
		p    *peer
		lane routing.Lane
	}
	replies := map[peerLane][2]int{} // messages, bytes
	t.inboundMu.Lock()
	s.InboundConnections = len(t.inbound)
	for ic := range t.inConns {
		ic.countPause() // before the counters are read
		if m, b := ic.pendingReplies(); m > 0 || b > 0 {
			k := peerLane{ic.peer, ic.lane}
			r := replies[k]
			replies[k] = [2]int{r[0] + m, r[1] + b}
		}
	}
	t.inboundMu.Unlock()
	type key struct {
		peer cluster.NodeID
		lane routing.Lane
	}
	merged := map[key]int{} // index in s.Conns
	add := func(cs ConnStats) {
		k := key{cs.Peer, cs.Lane}
		if i, seen := merged[k]; seen {
			s.Conns[i].add(&cs)
			return
		}
		merged[k] = len(s.Conns)
		s.Conns = append(s.Conns, cs)
	}
	for _, p := range peers {
		for _, lane := range routing.Lanes {
			cs, ok := p.laneStats(lane)
			if r, queued := replies[peerLane{p, lane}]; queued {
				cs.PendingMessages += uint64(r[0])
				cs.PendingBytes += uint64(r[1])
				ok = true
			}
			if ok {
				add(cs)
			}
		}
	}
	for _, p := range peers[:len(peers)-len(departed)] {
		s.Peers = append(s.Peers, PeerStats{Peer: p.id, Member: p.member.Load(),
			OutboundHeld: p.outAccount.Used(), InboundHeld: p.inAccount.Used()})
	}
	sort.Slice(s.Peers, func(i, j int) bool { return s.Peers[i].Peer < s.Peers[j].Peer })
	for _, lane := range routing.Lanes {
		if cs, ok := t.strangers.stats(StrangersPeer, lane); ok {
			add(cs)
		}
		if cs, ok := t.departedTotals.stats(DepartedPeer, lane); ok {
			add(cs)
		}
	}
	sort.Slice(s.Conns, func(i, j int) bool {
		a, b := s.Conns[i], s.Conns[j]
		return a.Peer < b.Peer || a.Peer == b.Peer && a.Lane < b.Lane
	})
	return s
}

// readIn fills cs's inbound counters from in.
func (cs *ConnStats) readIn(in *inCounters) {
	cs.MessagesReceived = in.received.Load()
	cs.BytesReceived = in.receivedBytes.Load()
	cs.CompressedFramesReceived = in.compressedFrames.Load()
	cs.HandlerErrors = in.handlerErrors.Load()
	cs.Throttled = in.throttled.Load()
	cs.ThrottledTime = time.Duration(in.throttledNanos.Load())
	for r := range NumReasons {
		cs.DroppedInbound[r] = in.dropped[r].Load()
		cs.RemoteDropped[r] = in.remoteDropped[r].Load()
	}
}

// readOut fills cs's outbound counters from out.
func (cs *ConnStats) readOut(out *connCounters) {
	cs.MessagesSent = out.sent.Load()
	cs.ResponsesSent = out.responses.Load()
	cs.BytesSent = out.sentBytes.Load()
	cs.Writes = out.writes.Load()
	cs.CallerWrites = out.callerWrites.Load()
	cs.Connects = out.connects.Load()
	cs.ConnectFailures = out.connectFailures.Load()
	cs.CompressedFrames = out.compressedFrames.Load()
	cs.CompressionIn, cs.CompressionOut = out.compressIn.Load(), out.compressOut.Load()
	cs.CompressionSkipped, cs.CompressionMisses = out.compressSkipped.Load(), out.compressMisses.Load()
	for r := range NumReasons {
		cs.Dropped[r] = out.dropped[r].Load()
	}
}

// seen reports whether cs counted anything at all.
func (cs *ConnStats) seen() bool {
	zero := ConnStats{Peer: cs.Peer, Lane: cs.Lane}
	return *cs != zero
}

// laneTotals sums, lane by lane, the counters of peer entries no longer
// kept (the strangers forgotten, the departed entries dropped).
type laneTotals [routing.NumLanes]struct {
	out connCounters
	in  inCounters
}

// add adds p's counters to the totals, or with take moves them.
func (lt *laneTotals) add(p *peer, take bool) {
	for lane := range routing.NumLanes {
		lt[lane].out.addFrom(&p.outbound[lane], take)
		lt[lane].in.addFrom(&p.inbound[lane], take)
	}
}

// stats reads the totals of lane as peer id's; peersMu held.
func (lt *laneTotals) stats(id cluster.NodeID, lane routing.Lane) (ConnStats, bool) {
	cs := ConnStats{Peer: id, Lane: lane}
	cs.readIn(&lt[lane].in)
	cs.readOut(&lt[lane].out)
	return cs, cs.seen()
}

// laneStats reads one lane's counters; ok is false for a lane that has
// seen no traffic either way.
func (p *peer) laneStats(lane routing.Lane) (cs ConnStats, ok bool) {
	cs = ConnStats{Peer: p.id, Lane: lane}
	if !p.member.Load() {
		cs.Peer = StrangersPeer
	}
	cs.readIn(&p.inbound[lane])
	cs.readOut(&p.outbound[lane])
	cs.SendQueueMax = p.sendMax[lane].Max()
	cs.RecvQueueMax = p.recvMax[lane].Max()
	cs.QueuesMeasured = p.queuesMeasured[lane].Load()
	// Under coalMu, so that a lane being retired (writerMayExit) is
	// counted once: live, or in the retired lanes' sum.
	p.coalMu.Lock()
	cs.Coalescing = p.retiredCoalescing[lane]
	c := p.lanes[lane].Load()
	if c != nil {
		c.strategyMu.Lock()
		addCoalescing(&cs.Coalescing, c.strategy.Stats())
		c.strategyMu.Unlock()
	}
	p.coalMu.Unlock()
	if c == nil {
		return cs, cs.seen()
	}
	cs.Connected = c.live.Load() != nil
	cs.PendingMessages = uint64(c.queue.unfinished())
	cs.PendingBytes = uint64(c.queue.held())
	return cs, true
}

// stageStats describes the verbs' stages, sorted by verb.
func (t *Transport) stageStats() []StageStats {
	t.handlersMu.Lock()
	out := make([]StageStats, 0, len(t.stages))
	for verb, s := range t.stages {
		out = append(out, s.stats(verb))
	}
	t.handlersMu.Unlock()
	slices.SortFunc(out, func(a, b StageStats) int { return cmp.Compare(a.Verb, b.Verb) })
	return out
}
