package transport_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// burnDuration is how long TestBurn sends: INTERNODE_BURN (e.g. "10m"), or
// 20 s by default, 3 s with -short.
func burnDuration(t *testing.T) time.Duration {
	if v := os.Getenv("INTERNODE_BURN"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "INTERNODE_BURN")
		return d
	}
	if testing.Short() {
		return 3 * time.Second
	}
	return 20 * time.Second
}

// burnLedger is what the verifier knows of one ordered pair's messages.
type burnLedger struct {
	mu        sync.Mutex
	accepted  []bool
	delivered []uint8
	dropped   []uint8
	reason    []transport.Reason
	// firm: sent with no deadline and small enough for the small lane
	// whatever its header, so it cannot expire on the way and goes in
	// order with the pair's other small-lane messages.
	firm []bool
	// conn is the receiver's connection the message arrived on, and
	// lane its lane, once delivered.
	conn []uint64
	lane []routing.Lane
}

func (l *burnLedger) grow(seq uint64) {
	for uint64(len(l.accepted)) <= seq {
		l.accepted = append(l.accepted, false)
		l.delivered = append(l.delivered, 0)
		l.dropped = append(l.dropped, 0)
		l.reason = append(l.reason, 0)
		l.firm = append(l.firm, false)
		l.conn = append(l.conn, 0)
		l.lane = append(l.lane, 0)
	}
}

// lostInFlight returns the firm messages the sender wrote or still had
// (neither dropped nor refused) that never reached the receiver's handler
// although a later small-lane message of the pair came on the same
// connection. A connection killed loses the messages written last on
// it, never one followed by another that arrived: TCP delivers a
// connection's bytes in order, and a small lane writes its queue in
// order. Without a deadline such a message cannot expire on arrival
// either; the receiver must not be one that rejects messages on arrival
// (OverloadReject). The caller holds l.mu.
func (l *burnLedger) lostInFlight() []uint64 {
	last := map[uint64]uint64{} // connection → the last seq delivered on it, +1
	var lost []uint64
	for seq := range l.accepted {
		if l.delivered[seq] == 0 || l.lane[seq] != routing.Small {
			continue
		}
		conn := l.conn[seq]
		if prev := last[conn]; prev > 0 {
			for gap := prev; gap < uint64(seq); gap++ {
				if l.firm[gap] && l.accepted[gap] && l.delivered[gap] == 0 && l.dropped[gap] == 0 {
					lost = append(lost, gap)
				}
			}
		}
		last[conn] = uint64(seq) + 1
	}
	return lost
}

// Verbs of TestBurn's liveness check: one pinned to the urgent lane, one
// routed by size.
const (
	verbFresh       transport.Verb = 60
	verbFreshUrgent transport.Verb = 61
)

// TestBurn runs four nodes, all pairs and all lanes, with random sizes
// across the 64 KiB threshold, tight limits (each receiver's smaller than
// its senders'), handlers that stall and fail, and connections killed at
// random; then checks every message's outcome, and that once the faults
// stop every ordered pair still delivers on every lane (nothing wedged)
// and nothing waits for capacity (no reader or writer parked).
func TestBurn(t *testing.T) {
	const nodes = 4
	duration := burnDuration(t)
	var (
		ledgers    [nodes][nodes]burnLedger
		lastSeq    sync.Map // [from,to,lane] → uint64 (+1)
		violations atomic.Int64
		firstBad   atomic.Value
		asyncDrops [nodes]atomic.Int64
		responses  [nodes]atomic.Int64 // requests whose handler ran: each sends one response
		attempts   [nodes]atomic.Int64 // Send/Request calls that reached a lane
		// freshArrived[from][to][lane] counts the liveness check's messages.
		freshArrived [nodes][nodes][routing.NumLanes]atomic.Int64
	)
	bad := func(format string, args ...any) {
		violations.Add(1)
		firstBad.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}
	index := func(id cluster.NodeID) int { return int(id[1] - '1') }

	c := transporttest.New(t, nodes, transporttest.Options{Proxied: true, ClusterName: "burn", Tweak: func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Outbound = transport.Limits{PerConnection: 512 << 10, PerPeer: 1 << 20, Node: 2 << 20}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 384 << 10, PerPeer: 768 << 10, Node: 1 << 20}
		cfg.Timeouts.Idle = 300 * time.Millisecond
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbFreshUrgent: routing.Urgent}
		cfg.Reconnect.MinBackoff = time.Millisecond
		cfg.Reconnect.MaxBackoff = 20 * time.Millisecond
		// Both outbound policies and both inbound policies are exercised.
		cfg.Memory.WaitForCapacity = i%2 == 0
		if i == nodes-1 {
			cfg.Memory.InboundOverload = transport.OverloadReject
		}
		cfg.OnDropped = func(d transport.DroppedMessage) {
			asyncDrops[i].Add(1)
			if d.Response || d.Verb != verbData {
				return
			}
			sender, seq, ok := checkPayload(d.Payload)
			if !ok || int(sender) != i {
				bad("dropped message with a corrupt payload")
				return
			}
			l := &ledgers[i][index(d.Peer)]
			l.mu.Lock()
			defer l.mu.Unlock()
			if seq >= uint64(len(l.accepted)) || !l.accepted[seq] {
				// Send may not have recorded it yet: it returned nil
				// after queueing, and the drop raced it. Grow and record.
				l.grow(seq)
			}
			l.dropped[seq]++
			l.reason[seq] = d.Reason
		}
	}})
	trs := c.Nodes
	for i, tr := range trs {
		handler := func(ctx context.Context, m *transport.Message) ([]byte, error) {
			if m.IsRequest {
				responses[i].Add(1)
			}
			sender, seq, ok := checkPayload(m.Payload)
			if !ok || int(sender) != index(m.From) {
				bad("corrupt payload from %s", m.From)
				return nil, errors.New("corrupt")
			}
			if m.Verb == verbData {
				// FIFO within a connection's life on the urgent and small
				// lanes; large messages complete in any order.
				key := [4]uint64{uint64(sender), uint64(i), uint64(m.Lane), m.Conn}
				if prev, loaded := lastSeq.Swap(key, seq+1); loaded && prev.(uint64) > seq && m.Lane != routing.Large {
					bad("out of order on %v: %d after %d", key, seq, prev.(uint64)-1)
				}
				l := &ledgers[sender][i]
				l.mu.Lock()
				l.grow(seq)
				l.delivered[seq]++
				l.conn[seq], l.lane[seq] = m.Conn, m.Lane
				l.mu.Unlock()
			}
			r := rand.Uint32N(1000)
			switch {
			case r < 5: // stall: a slow disk, a long GC pause
				select {
				case <-time.After(time.Duration(rand.IntN(30)) * time.Millisecond):
				case <-ctx.Done():
				}
			case r < 15:
				return nil, errors.New("handler failed")
			}
			return m.Payload, nil
		}
		tr.Handle(verbData, transport.HandlerFunc(handler))
		tr.Handle(verbEcho, transport.HandlerFunc(handler))
		fresh := func(ctx context.Context, m *transport.Message) ([]byte, error) {
			freshArrived[index(m.From)][i][m.Lane].Add(1)
			return nil, nil
		}
		tr.Handle(verbFresh, transport.HandlerFunc(fresh))
		tr.Handle(verbFreshUrgent, transport.HandlerFunc(fresh))
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	// sendersCtx carries no deadline (the messages sent under it have
	// none) and ends with ctx.
	sendersCtx, stopSenders := context.WithCancel(context.Background())
	defer stopSenders()
	context.AfterFunc(ctx, stopSenders)
	var wg sync.WaitGroup
	var requestsOK, requestsFailed atomic.Int64
	var reqErrs counter[string]
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() { // one-way data, in order
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(from), uint64(to)))
				l := &ledgers[from][to]
				for seq := uint64(0); ctx.Err() == nil; seq++ {
					p := makePayload(uint32(from), seq, burnSize(r))
					// No deadline, but the end of the burn ends a wait for
					// capacity: a lane that never drains fails the checks
					// below instead of holding its sender for ever.
					sendCtx, cancel := context.WithCancel(sendersCtx)
					expires := r.IntN(10) == 0
					if expires { // some expire while queued or paused
						sendCtx, cancel = context.WithTimeout(context.Background(), time.Duration(1+r.IntN(20))*time.Millisecond)
					}
					l.mu.Lock()
					l.grow(seq)
					l.accepted[seq] = true // recorded first: OnDropped may fire before Send returns
					l.firm[seq] = !expires && len(p) <= 32<<10
					l.mu.Unlock()
					err := trs[from].Send(sendCtx, trs[to].NodeID(), verbData, p)
					cancel()
					attempts[from].Add(1)
					if err != nil {
						l.mu.Lock()
						l.accepted[seq] = false
						l.mu.Unlock()
						if !errors.Is(err, transport.ErrOverloaded) && !errors.Is(err, context.DeadlineExceeded) &&
							(!errors.Is(err, context.Canceled) || sendersCtx.Err() == nil) {
							bad("send: %v", err)
						}
						time.Sleep(time.Duration(500+r.IntN(2000)) * time.Microsecond) // the caller backs off
					}
				}
			}()
			wg.Add(1)
			go func() { // requests
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(from), uint64(to)+100))
				for seq := uint64(0); ctx.Err() == nil; seq++ {
					p := makePayload(uint32(from), seq, burnSize(r))
					reqCtx, cancel := context.WithTimeout(context.Background(), time.Duration(20+r.IntN(500))*time.Millisecond)
					resp, err := trs[from].Request(reqCtx, trs[to].NodeID(), verbEcho, p)
					cancel()
					attempts[from].Add(1)
					if err != nil {
						requestsFailed.Add(1)
						reqErrs.add(errors.Unwrap(err).Error())
						continue
					}
					requestsOK.Add(1)
					if string(resp) != string(p) {
						bad("request %d: wrong response", seq)
					}
				}
			}()
		}
	}
	wg.Add(1)
	killed := 0
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(42, 42))
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if c.Proxies[r.IntN(nodes)].KillOne(r.IntN) {
					killed++
				}
			}
		}
	}()
	wg.Wait()

	// Quiet: every reserved byte returns, and nothing still in flight in
	// the kernel is delivered any more (the arrival counters stop moving).
	arrivals := func() (n uint64) {
		for _, tr := range trs {
			st := tr.Stats().Total()
			n += st.MessagesReceived + st.DroppedTotal()
			for _, d := range st.DroppedInbound {
				n += d
			}
		}
		return n
	}
	var last uint64
	stable := 0
	quiet := assert.Eventually(t, func() bool {
		for _, tr := range trs {
			st := tr.Stats()
			if st.OutboundBytes != 0 || st.InboundHeld != 0 || st.Total().PendingBytes != 0 {
				stable = 0
				return false
			}
		}
		if n := arrivals(); n != last {
			last, stable = n, 0
			return false
		}
		stable++
		return stable >= 200 // about 200 ms without a change
	}, time.Minute, time.Millisecond, "quiet: all capacity returned, arrivals settled")
	if !quiet { // name what is held, and go on to the checks that name stuck lanes
		for _, tr := range trs {
			for _, c := range tr.Stats().Conns {
				if c.PendingBytes != 0 {
					t.Errorf("%s→%s %s lane still holds %d messages, %d bytes", tr.NodeID(), c.Peer, c.Lane, c.PendingMessages, c.PendingBytes)
				}
			}
		}
	}
	require.Zero(t, violations.Load(), "first violation: %v", firstBad.Load())

	for from := range nodes { // the verifier reads the ledgers under their locks
		for to := range nodes {
			ledgers[from][to].mu.Lock()
			defer ledgers[from][to].mu.Unlock()
		}
	}

	var delivered, dropped, both, accepted int
	var throttled, overloaded, rejected uint64
	for from := range nodes {
		st := trs[from].Stats().Total()
		throttled += st.Throttled
		overloaded += st.Dropped[transport.ReasonOverloaded]
		rejected += st.DroppedInbound[transport.ReasonOverloaded]
		// Every message that reached a lane ended in exactly one
		// send-side outcome: written, or dropped with a reason.
		// Responses: one per request whose handler ran, and one failure
		// per message rejected on arrival.
		outcomes := int64(st.MessagesSent + st.DroppedTotal())
		// A message rejected on arrival from a batch is answered with a
		// failure response; a large one is refused before it travels,
		// which its sender counts as its outcome.
		var answered int64
		for _, c := range trs[from].Stats().Conns {
			if c.Lane != routing.Large {
				answered += int64(c.DroppedInbound[transport.ReasonOverloaded])
			}
		}
		queued := attempts[from].Load() + responses[from].Load() + answered
		assert.Equal(t, queued, outcomes, "n%d: messages and responses queued vs written+dropped", from+1)
		for to := range nodes {
			l := &ledgers[from][to]
			for seq := range l.accepted {
				switch {
				case l.delivered[seq] > 1:
					t.Errorf("n%d→n%d #%d delivered %d times", from+1, to+1, seq, l.delivered[seq])
				case l.dropped[seq] > 1:
					t.Errorf("n%d→n%d #%d dropped %d times", from+1, to+1, seq, l.dropped[seq])
				case l.delivered[seq] == 1 && !l.accepted[seq]:
					t.Errorf("n%d→n%d #%d delivered though Send failed", from+1, to+1, seq)
				case l.dropped[seq] == 1 && !l.accepted[seq]:
					t.Errorf("n%d→n%d #%d dropped after Send failed", from+1, to+1, seq)
				case l.delivered[seq] == 1 && l.dropped[seq] == 1 && l.reason[seq] != transport.ReasonConnectionReset:
					t.Errorf("n%d→n%d #%d delivered and dropped as %v", from+1, to+1, seq, l.reason[seq])
				}
				if l.accepted[seq] {
					accepted++
				}
				if l.delivered[seq] == 1 {
					delivered++
				}
				if l.dropped[seq] == 1 {
					dropped++
				}
				if l.delivered[seq] == 1 && l.dropped[seq] == 1 {
					both++
				}
			}
			// The last node rejects messages on arrival: a gap there may
			// be one it rejected.
			if lost := l.lostInFlight(); to != nodes-1 && len(lost) > 0 {
				t.Errorf("n%d→n%d: %d messages neither delivered nor dropped, though later ones came on their connection: #%v",
					from+1, to+1, len(lost), lost[:min(len(lost), 10)])
			}
		}
	}
	t.Logf("burn %v: one-way accepted=%d delivered=%d dropped=%d (reset but delivered %d, lost in killed connections %d); "+
		"requests ok=%d failed=%d; connections killed=%d; throttled=%d; send overloads=%d; rejected on arrival=%d",
		duration, accepted, delivered, dropped, both, accepted-delivered-dropped+both,
		requestsOK.Load(), requestsFailed.Load(), killed, throttled, overloaded, rejected)
	t.Logf("request errors: %v", reqErrs.m)
	assert.NotZero(t, throttled, "limits were tight enough to pause readers")
	assert.NotZero(t, overloaded, "limits were tight enough to refuse sends")
	assert.NotZero(t, rejected, "the rejecting node rejected")
	assert.NotZero(t, requestsOK.Load())

	// Liveness: with the faults over, every ordered pair delivers a fresh
	// message on every lane within a few seconds, and nothing is left
	// waiting for capacity.
	for _, tr := range trs {
		st := tr.Stats()
		assert.Zero(t, st.OutboundWaiters, "%s: a Send is parked waiting for capacity", tr.NodeID())
		assert.Zero(t, st.InboundWaiters, "%s: a reader or a large message is parked waiting for capacity", tr.NodeID())
	}
	stuck := 0
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			for _, lane := range routing.Lanes {
				verb, size := verbFresh, 100
				switch lane {
				case routing.Urgent:
					verb = verbFreshUrgent
				case routing.Large:
					size = 100 << 10
				}
				sendCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := trs[from].Send(sendCtx, trs[to].NodeID(), verb, make([]byte, size))
				cancel()
				delivered := err == nil && assert.Eventually(t, func() bool { return freshArrived[from][to][lane].Load() > 0 },
					5*time.Second, time.Millisecond, "n%d→n%d %s lane delivers a fresh message", from+1, to+1, lane)
				if !delivered {
					stuck++
					t.Errorf("n%d→n%d %s lane is stuck: %v", from+1, to+1, lane, err)
				}
			}
		}
	}
	t.Logf("liveness after the faults: %d of %d pair lanes stuck", stuck, nodes*(nodes-1)*routing.NumLanes)
}

// burnSize: mostly small, some near the threshold, some large.
func burnSize(r *rand.Rand) int {
	switch x := r.IntN(100); {
	case x < 80:
		return 12 + r.IntN(4<<10)
	case x < 90:
		return 4<<10 + r.IntN(60<<10)
	default:
		return 64<<10 + r.IntN(192<<10)
	}
}
