package gossip_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// Three nodes on loopback gossip their heartbeats every 100 ms until each
// has heard from the other two.
func Example() {
	nodes, err := transporttest.Start(3, transporttest.Options{ClusterName: "example", Tweak: func(i int, cfg *transport.Config) {
		gossip.Register(cfg) // digests travel on the urgent lane
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer nodes.Close()
	var ids []cluster.NodeID
	gossipers := map[cluster.NodeID]*gossip.Gossiper{}
	ctx, stopGossip := context.WithCancel(context.Background())
	var running sync.WaitGroup

	for i, t := range nodes.Nodes {
		id := nodes.ID(i)
		ids = append(ids, id)
		g, err := gossip.New(gossip.Config{
			Self:   id,
			Sender: t,
			Peers: func() []cluster.NodeID {
				var peers []cluster.NodeID
				for _, m := range nodes.Members.Members() {
					peers = append(peers, m.ID)
				}
				return peers
			},
		})
		if err != nil {
			log.Fatal(err)
		}
		t.Handle(gossip.Verb, g)
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
