package transport_test

import (
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const (
	verbStormData    transport.Verb = 8260 // one-way; its handler stalls now and then
	verbStormEcho    transport.Verb = 8261 // answers with the payload
	verbStormUrgent  transport.Verb = 8262 // one-way, on the urgent lane
	verbStormStreamd transport.Verb = 8263 // one-way, streamed (ReaderHandler)
)

// stormLimits are valid limits for a MaxMessageSize of 256 KiB, from
// tight (a large message fills a peer's room) to roomy.
var stormLimits = []transport.Limits{
	{PerConnection: 64 << 10, PerPeer: 300 << 10, Node: 300 << 10},
	{PerConnection: 128 << 10, PerPeer: 400 << 10, Node: 600 << 10},
	{PerConnection: 256 << 10, PerPeer: 1 << 20, Node: 2 << 20},
	{PerConnection: 1 << 20, PerPeer: 4 << 20, Node: 8 << 20},
}

// TestSetLimitsStormReturnsEveryByte: three nodes send to each other on
// every lane, large messages (granted before they travel) and streamed
// ones included, with callers that give up at random, while the limits of
// every node go up and down under them. Once the senders stop, every
// caller has returned and every account — node, peer, connection — is
// back at zero on both sides.
func TestSetLimitsStormReturnsEveryByte(t *testing.T) {
	const nodes = 3
	c := transporttest.New(t, nodes, transporttest.Options{Proxied: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = stormLimits[1]
		cfg.Memory.Outbound = stormLimits[1]
		cfg.Memory.WaitForCapacity = i != 0
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbStormUrgent: routing.Urgent}
		cfg.Reconnect.MinBackoff = time.Millisecond
		cfg.Reconnect.MaxBackoff = 10 * time.Millisecond
	}})
	stall := func(ctx context.Context) {
		if rand.IntN(20) == 0 {
			select {
			case <-time.After(time.Duration(rand.IntN(20)) * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	c.HandleAll(verbStormData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		stall(ctx)
		return nil, nil
	}))
	c.HandleAll(verbStormUrgent, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil }))
	c.HandleAll(verbStormEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		stall(ctx)
		return m.Payload, nil
	}))
	for _, n := range c.Nodes {
		n.HandleReader(verbStormStreamd, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
			stall(ctx)
			_, err := io.Copy(io.Discard, body)
			return nil, err
		}))
	}

	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var wg sync.WaitGroup
	var calls, failures atomic.Int64
	size := func(r *rand.Rand) int {
		switch r.IntN(4) {
		case 0:
			return r.IntN(512)
		case 1:
			return r.IntN(60 << 10)
		default:
			return 64<<10 + r.IntN(190<<10)
		}
	}
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(from), uint64(to*10+w)))
					for ctx.Err() == nil {
						p := make([]byte, size(r))
						callCtx, cancel := context.WithCancel(context.Background())
						giveUp := time.AfterFunc(time.Duration(r.IntN(30))*time.Millisecond, cancel)
						var err error
						switch r.IntN(4) {
						case 0:
							err = c.Nodes[from].Send(callCtx, c.ID(to), verbStormData, p)
						case 1:
							err = c.Nodes[from].Send(callCtx, c.ID(to), verbStormUrgent, p[:min(len(p), 200)])
						case 2:
							err = c.Nodes[from].Send(callCtx, c.ID(to), verbStormStreamd, p)
						default:
							_, err = c.Nodes[from].Request(callCtx, c.ID(to), verbStormEcho, p)
						}
						giveUp.Stop()
						cancel()
						calls.Add(1)
						if err != nil {
							failures.Add(1)
						}
					}
				}()
			}
		}
	}
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				out, in := stormLimits[r.IntN(len(stormLimits))], stormLimits[r.IntN(len(stormLimits))]
				assert.NoError(t, c.Nodes[i].SetLimits(out, in))
				time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
			}
		}()
	}
	wg.Add(1)
	go func() { // connections die, between a grant and its message's parts among other moments
		defer wg.Done()
		r := rand.New(rand.NewPCG(9, 9))
		for ctx.Err() == nil {
			c.Proxies[r.IntN(nodes)].KillOne(r.IntN)
			time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
		}
	}()
	callersDone := make(chan struct{})
	go func() { wg.Wait(); close(callersDone) }()
	select {
	case <-callersDone:
	case <-time.After(duration + 30*time.Second):
		t.Fatal("callers still blocked 30 s after the storm ended")
	}
	t.Logf("%d calls, %d failed", calls.Load(), failures.Load())
	for _, n := range c.Nodes {
		require.NoError(t, n.SetLimits(stormLimits[3], stormLimits[3]))
	}
	held := func() (what string, ok bool) {
		for _, n := range c.Nodes {
			st := n.Stats()
			if st.OutboundBytes != 0 || st.InboundHeld != 0 || st.Total().PendingBytes != 0 {
				return string(n.NodeID()), false
			}
			for _, p := range st.Peers {
				if p.OutboundHeld != 0 || p.InboundHeld != 0 {
					return string(n.NodeID()), false
				}
			}
		}
		return "", true
	}
	if !assert.Eventually(t, func() bool { _, ok := held(); return ok }, 20*time.Second, time.Millisecond, "every byte back") {
		for _, n := range c.Nodes {
			st := n.Stats()
			t.Errorf("%s: outbound %d, inbound %d, pending %d", n.NodeID(), st.OutboundBytes, st.InboundHeld, st.Total().PendingBytes)
			for _, p := range st.Peers {
				t.Errorf("%s peer %s: outbound %d, inbound %d", n.NodeID(), p.Peer, p.OutboundHeld, p.InboundHeld)
			}
			for _, cs := range st.Conns {
				if cs.PendingBytes != 0 {
					t.Errorf("%s→%s %s: %d messages, %d bytes pending", n.NodeID(), cs.Peer, cs.Lane, cs.PendingMessages, cs.PendingBytes)
				}
			}
		}
	}
	// Every pair still moves on every lane once the storm is over.
	for from := range nodes {
		for to := range nodes {
			if from == to {
				continue
			}
			for _, n := range []int{10, 100 << 10} {
				_, err := c.Nodes[from].Request(ctxTimeout(t, 10*time.Second), c.ID(to), verbStormEcho, make([]byte, n))
				assert.NoError(t, err, "%d→%d, %d bytes", from, to, n)
			}
		}
	}
}
