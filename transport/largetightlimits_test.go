package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestLargeLanesMoveUnderTighterInboundLimits: every node's inbound limits
// are a fraction of what its peers may send it (one node rejects rather
// than pauses), its handlers stall now and then, messages come near
// MaxMessageSize as one-way messages, some traced, and as large requests
// with large responses in both directions, callers give up on some of
// their requests, stream sessions open and close beside them, and the
// inbound limits are lowered to little more than MaxMessageSize and
// raised again while it all flows. Afterwards every pair's large lane
// must still deliver, all room but the idle sessions' must come back, the
// messages and responses queued must equal those written or dropped, and
// each one-way message without a deadline must have been delivered or
// dropped, once.
func TestLargeLanesMoveUnderTighterInboundLimits(t *testing.T) {
	const (
		nodes       = 4
		maxMessage  = 1 << 20
		verbEchoL   = transport.Verb(71)
		verbFreshL  = transport.Verb(72)
		verbStreamL = transport.Verb(73)
	)
	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	outbound := transport.Limits{PerConnection: 2 << 20, PerPeer: 8 << 20, Node: 16 << 20}
	inbound := transport.Limits{PerConnection: 128 << 10, PerPeer: 3 << 19, Node: 2 << 20}
	// Lowered, the limits still hold the largest message beside a
	// session (384 KiB) per peer and two node-wide, as many as were
	// accepted: lowered further, a message would wait for a session to
	// close (see SetLimits).
	lowered := transport.Limits{PerConnection: 128 << 10, PerPeer: maxMessage + 384<<10, Node: maxMessage + 768<<10}
	var (
		ledgers    [nodes][nodes]burnLedger
		violations atomic.Int64
		firstBad   atomic.Value
		responses  [nodes]atomic.Int64
		attempts   [nodes]atomic.Int64
		fresh      [nodes][nodes]atomic.Int64
	)
	bad := func(format string, args ...any) {
		violations.Add(1)
		firstBad.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}
	index := func(id cluster.NodeID) int { return int(id[1] - '1') }
	c := newCluster(t, nodes, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = maxMessage
		cfg.Memory.Outbound = outbound
		cfg.Memory.Inbound = inbound
		cfg.Memory.WaitForCapacity = i%2 == 0
		cfg.Streams.SessionBuffer = 384 << 10
		cfg.Streams.StreamBuffer = 64 << 10
		if i == nodes-1 {
			cfg.Memory.InboundOverload = transport.OverloadReject
		}
		cfg.OnDropped = func(d transport.DroppedMessage) {
			if d.Response || d.Verb != verbData {
				return
			}
			sender, seq, ok := checkBigPayload(d.Payload)
			if !ok || int(sender) != i {
				bad("dropped message with a corrupt payload")
				return
			}
			l := &ledgers[i][index(d.Peer)]
			l.mu.Lock()
			defer l.mu.Unlock()
			l.grow(seq)
			l.dropped[seq]++
			l.reason[seq] = d.Reason
		}
	})
	trs := c.Nodes
	for i, tr := range trs {
		handler := func(ctx context.Context, m *transport.Message) ([]byte, error) {
			if m.IsRequest {
				responses[i].Add(1)
			}
			sender, seq, ok := checkBigPayload(m.Payload)
			if !ok || int(sender) != index(m.From) {
				bad("corrupt payload from %s", m.From)
				return nil, errors.New("corrupt")
			}
			if m.Verb == verbData {
				l := &ledgers[sender][i]
				l.mu.Lock()
				l.grow(seq)
				l.delivered[seq]++
				l.mu.Unlock()
			}
			if rand.IntN(20) == 0 { // a slow disk
				select {
				case <-time.After(time.Duration(rand.IntN(50)) * time.Millisecond):
				case <-ctx.Done():
				}
			}
			return m.Payload, nil
		}
		tr.Handle(verbData, transport.HandlerFunc(handler))
		tr.Handle(verbEchoL, transport.HandlerFunc(handler))
		tr.HandleStream(verbStreamL, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
			_, _ = io.Copy(io.Discard, s)
		}))
		tr.Handle(verbFreshL, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
			fresh[index(m.From)][i].Add(1)
			return nil, nil
		}))
	}
	size := func(r *rand.Rand) int {
		if r.IntN(3) == 0 {
			return maxMessage - 4<<10 - r.IntN(64<<10)
		}
		return 64<<10 + r.IntN(maxMessage-128<<10)
	}

	traced := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, Remote: true})
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
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
			go func() { // one-way
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(from), uint64(to)))
				l := &ledgers[from][to]
				for seq := uint64(0); ctx.Err() == nil; seq++ {
					p := makeBigPayload(uint32(from), seq, size(r))
					sendCtx, cancel := context.WithCancel(sendersCtx)
					if r.IntN(2) == 0 {
						sendCtx = trace.ContextWithRemoteSpanContext(sendCtx, traced)
					}
					expires := r.IntN(4) == 0
					if expires { // some expire on the way, at their receiver too
						sendCtx, cancel = context.WithTimeout(context.Background(), time.Duration(1+r.IntN(100))*time.Millisecond)
					}
					l.mu.Lock()
					l.grow(seq)
					l.accepted[seq] = true
					l.firm[seq] = !expires
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
						time.Sleep(time.Millisecond)
					}
				}
			}()
			wg.Add(1)
			go func() { // a stream session beside the large messages
				defer wg.Done()
				for ctx.Err() == nil {
					s, err := trs[from].OpenStream(ctx, trs[to].NodeID(), verbStreamL)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					for range 20 {
						if _, err := s.Write(make([]byte, 8<<10)); err != nil {
							break
						}
					}
					select {
					case <-ctx.Done():
					case <-time.After(200 * time.Millisecond):
					}
					_ = s.Close()
				}
			}()
			for k := range 2 {
				wg.Add(1)
				go func() { // requests with large responses; some callers give up
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(from), uint64(to)+uint64(100*(k+1))))
					for seq := uint64(0); ctx.Err() == nil; seq++ {
						p := makeBigPayload(uint32(from), seq, size(r))
						reqCtx, cancel := context.WithTimeout(context.Background(), time.Duration(5+r.IntN(400))*time.Millisecond)
						resp, err := trs[from].Request(reqCtx, trs[to].NodeID(), verbEchoL, p)
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
	}
	wg.Add(1)
	go func() { // the inbound limits go down to MaxMessageSize and up again
		defer wg.Done()
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		low := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			low = !low
			for i, tr := range trs {
				lim := inbound
				if low && i%2 == 0 || !low && i%2 == 1 {
					lim = lowered
				}
				if err := tr.SetLimits(outbound, lim); err != nil {
					bad("SetLimits: %v", err)
				}
			}
		}
	}()
	wg.Wait()
	for _, tr := range trs {
		require.NoError(t, tr.SetLimits(outbound, inbound))
	}

	quiet := assert.Eventually(t, func() bool {
		for _, tr := range trs {
			st := tr.Stats()
			// Idle stream sessions keep their buffers: at most two a node.
			if st.OutboundBytes != 0 || st.InboundHeld > 2*384<<10 || st.Total().PendingBytes != 0 || st.InboundWaiters != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, time.Millisecond, "quiet: all capacity returned")
	if !quiet {
		for _, tr := range trs {
			st := tr.Stats()
			t.Errorf("%s: outbound %d inbound %d waiters %d/%d", tr.NodeID(), st.OutboundBytes, st.InboundHeld, st.OutboundWaiters, st.InboundWaiters)
			for _, cs := range st.Conns {
				if cs.PendingBytes != 0 {
					t.Errorf("%s→%s %s lane still holds %d messages, %d bytes", tr.NodeID(), cs.Peer, cs.Lane, cs.PendingMessages, cs.PendingBytes)
				}
			}
		}
	}
	require.Zero(t, violations.Load(), "first violation: %v", firstBad.Load())

	var accepted, delivered, dropped int
	for from := range nodes {
		st := trs[from].Stats().Total()
		var answered int64
		for _, cs := range trs[from].Stats().Conns {
			if cs.Lane != routing.Large {
				answered += int64(cs.DroppedInbound[transport.ReasonOverloaded])
			}
		}
		queued := attempts[from].Load() + responses[from].Load() + answered
		assert.Equal(t, queued, int64(st.MessagesSent+st.DroppedTotal()), "n%d: messages and responses queued vs written+dropped", from+1)
		for to := range nodes {
			l := &ledgers[from][to]
			l.mu.Lock()
			for seq := range l.accepted {
				switch {
				case l.delivered[seq] > 1 || l.dropped[seq] > 1:
					t.Errorf("n%d→n%d #%d delivered %d, dropped %d times", from+1, to+1, seq, l.delivered[seq], l.dropped[seq])
				case l.accepted[seq] && l.firm[seq] && l.delivered[seq]+l.dropped[seq] != 1:
					t.Errorf("n%d→n%d #%d delivered %d, dropped %d (%v)", from+1, to+1, seq, l.delivered[seq], l.dropped[seq], l.reason[seq])
				case !l.accepted[seq] && l.delivered[seq]+l.dropped[seq] != 0:
					t.Errorf("n%d→n%d #%d refused by Send, yet delivered %d, dropped %d", from+1, to+1, seq, l.delivered[seq], l.dropped[seq])
				}
				if l.accepted[seq] {
					accepted++
					delivered += int(l.delivered[seq])
					dropped += int(l.dropped[seq])
				}
			}
			l.mu.Unlock()
		}
	}
	t.Logf("one-way accepted=%d delivered=%d dropped=%d; requests ok=%d failed=%d; errors %v",
		accepted, delivered, dropped, requestsOK.Load(), requestsFailed.Load(), reqErrs.m)

	for _, tr := range trs {
		st := tr.Stats()
		assert.Zero(t, st.OutboundWaiters, "%s: a Send waits for capacity", tr.NodeID())
		assert.Zero(t, st.InboundWaiters, "%s: a large message waits for capacity", tr.NodeID())
	}
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			err := trs[from].Send(ctxTimeout(t, 5*time.Second), trs[to].NodeID(), verbFreshL, make([]byte, maxMessage-8<<10))
			if assert.NoError(t, err, "n%d→n%d", from+1, to+1) {
				assert.Eventually(t, func() bool { return fresh[from][to].Load() > 0 }, 5*time.Second, time.Millisecond,
					"n%d→n%d large lane delivers a fresh message", from+1, to+1)
			}
		}
	}
}

// makeBigPayload is makePayload for sizes past fill: the rest is cut from
// fill again and again.
func makeBigPayload(sender uint32, seq uint64, size int) []byte {
	p := makePayload(sender, seq, 12)
	p = append(p, make([]byte, max(size, 12)-12)...)
	for off := 12; off < len(p); off += copy(p[off:], fill[int(seq%4096):]) {
	}
	return p
}

// checkBigPayload checks a payload of makeBigPayload.
func checkBigPayload(p []byte) (sender uint32, seq uint64, ok bool) {
	if len(p) < 12 {
		return 0, 0, false
	}
	sender, seq, _ = checkPayload(p[:12])
	want := makeBigPayload(sender, seq, len(p))
	return sender, seq, string(want) == string(p)
}
