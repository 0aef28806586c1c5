// Command simulator runs several internode nodes in one process on
// loopback and drives a mixed workload between them, then reports what
// happened to every message.
//
//	go run ./examples/simulator
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

const (
	verbGossip transport.Verb = 1
	verbWrite  transport.Verb = 2
	verbRead   transport.Verb = 3
)

func main() {
	nodes := flag.Int("nodes", 3, "number of nodes")
	duration := flag.Duration("duration", 5*time.Second, "how long to run the workload")
	rate := flag.Int("rate", 2000, "writes per second per node")
	flag.Parse()
	if err := run(os.Stdout, *nodes, *duration, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "simulator:", err)
		os.Exit(1)
	}
}

// tally counts one node's outcomes.
type tally struct {
	sent, failed, delivered atomic.Int64
}

func run(out io.Writer, n int, duration time.Duration, rate int) error {
	members := cluster.NewStatic()
	var nodes []*transport.Transport
	defer func() {
		for _, t := range nodes {
			t.Close()
		}
	}()
	received := make([]atomic.Int64, n)
	for i := range n {
		cfg := transport.DefaultConfig()
		cfg.NodeID = cluster.NodeID(fmt.Sprintf("n%d", i+1))
		cfg.ClusterName = "simulator"
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Membership = members
		cfg.LaneOverrides = map[transport.Verb]routing.Lane{verbGossip: routing.Urgent}
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		t, err := transport.New(cfg)
		if err != nil {
			return err
		}
		nodes = append(nodes, t)
		count := func(ctx context.Context, m *transport.Message) ([]byte, error) {
			received[i].Add(1)
			return nil, nil
		}
		t.Handle(verbGossip, transport.HandlerFunc(count))
		t.Handle(verbWrite, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			received[i].Add(1)
			return []byte("ack"), nil
		}))
		t.Start()
		members.Add(cluster.Member{ID: cfg.NodeID, Addr: t.Addr().String()})
	}
	fmt.Fprintf(out, "%d nodes on loopback, %v of gossip (urgent lane) and replicated writes of 100 B and 100 KiB (small and large lanes)\n", n, duration)

	tallies := make([]tally, n)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drive(ctx, nodes, i, rate, &tallies[i])
		}()
	}
	wg.Wait()

	var sent, failed, delivered int64
	for i := range n {
		s, f := tallies[i].sent.Load(), tallies[i].failed.Load()
		st := nodes[i].Stats().Total()
		fmt.Fprintf(out, "n%d: sent=%d failed=%d handled=%d writes=%d msgs/write=%.1f\n",
			i+1, s, f, received[i].Load(), st.Writes, float64(st.MessagesSent)/float64(max(st.Writes, 1)))
		sent += s
		failed += f
		delivered += tallies[i].delivered.Load()
	}
	lost := sent - failed - delivered
	fmt.Fprintf(out, "summary: nodes=%d sent=%d delivered=%d failed=%d lost=%d\n", n, sent, delivered, failed, lost)
	if lost != 0 {
		return errors.New("messages lost")
	}
	return nil
}

// drive sends gossip to a random peer and replicated writes (requests) to
// two peers at the given rate until ctx ends. Every write ends acknowledged
// or failed; nothing is left without an outcome.
func drive(ctx context.Context, nodes []*transport.Transport, self, rate int, t *tally) {
	r := rand.New(rand.NewPCG(uint64(self), 1))
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		peer := nodes[(self+1+r.IntN(len(nodes)-1))%len(nodes)].NodeID()
		// One-way: its outcome is counted by the transports' stats.
		_ = nodes[self].Send(ctx, peer, verbGossip, []byte("digest"))
		size := 100
		if r.IntN(50) == 0 {
			size = 100 << 10 // above the 64 KiB threshold: the large lane
		}
		value := make([]byte, size)
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			t.sent.Add(1)
			reqCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := nodes[self].Request(reqCtx, peer, verbWrite, value); err != nil {
				t.failed.Add(1)
				return
			}
			t.delivered.Add(1)
		}()
	}
}
