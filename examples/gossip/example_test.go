package gossip_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/transport"
)

// Three nodes on loopback gossip their heartbeats every 100 ms until each
// has heard from the other two.
func Example() {
	members := cluster.NewStatic()
	ids := []cluster.NodeID{"n1", "n2", "n3"}
	gossipers := map[cluster.NodeID]*gossip.Gossiper{}
	ctx, stopGossip := context.WithCancel(context.Background())
	var running sync.WaitGroup

	for _, id := range ids {
		cfg := transport.DefaultConfig()
		cfg.NodeID = id
		cfg.ClusterName = "example"
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Membership = members
		cfg.Telemetry.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		gossip.Register(&cfg) // digests travel on the urgent lane
		t, err := transport.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer t.Close()

		g, err := gossip.New(gossip.Config{
			Self:   id,
			Sender: t,
			Peers: func() []cluster.NodeID {
				var peers []cluster.NodeID
				for _, m := range members.Members() {
					peers = append(peers, m.ID)
				}
				return peers
			},
		})
		if err != nil {
			log.Fatal(err)
		}
		t.Handle(gossip.Verb, g)
		t.Start()
		members.Add(cluster.Member{ID: id, Addr: t.Addr().String()})
		gossipers[id] = g

		ticker := time.NewTicker(gossip.DefaultInterval)
		defer ticker.Stop()
		running.Go(func() { g.Run(ctx, ticker.C) })
	}

	heardFromAll := func() bool {
		for _, a := range ids {
			for _, b := range ids {
				if e, ok := gossipers[a].Known(b); !ok || e.Heartbeat == 0 {
					return false
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !heardFromAll() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // poll; the gossip runs on its own
	}
	for _, id := range ids {
		fmt.Println(id, "knows", len(gossipers[id].Entries()), "nodes; stale:", gossipers[id].Stale(time.Second))
	}
	stopGossip()
	running.Wait() // then the deferred Close calls stop the transports
	// Output:
	// n1 knows 3 nodes; stale: []
	// n2 knows 3 nodes; stale: []
	// n3 knows 3 nodes; stale: []
}
