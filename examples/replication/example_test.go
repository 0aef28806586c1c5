package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// Three nodes on loopback, each a replica; n1 coordinates two writes, one
// small (small lane) and one of 200 KiB (large lane), each acknowledged by a
// quorum of 2 of the 3 replicas.
func Example() {
	nodes, err := transporttest.Start(3, transporttest.Options{ClusterName: "example"}) // n1, n2, n3
	if err != nil {
		log.Fatal(err)
	}
	defer nodes.Close()
	var ids []cluster.NodeID
	transports := map[cluster.NodeID]*transport.Transport{}
	stores := map[cluster.NodeID]*replication.Store{}
	for i, t := range nodes.Nodes {
		id := nodes.ID(i)
		ids = append(ids, id)
		stores[id] = replication.NewStore()
		t.Handle(replication.Verb, stores[id]) // every node is a replica
		transports[id] = t
	}

	coordinator, err := replication.New(replication.Config{
		Self:      "n1",
		Requester: transports["n1"],
		Local:     stores["n1"], // n1 owns every key too: applied without a message
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	writes := map[string][]byte{
		"user/1":   []byte("ada"),
		"avatar/1": bytes.Repeat([]byte{0xAB}, 200<<10),
	}
	for _, key := range []string{"user/1", "avatar/1"} {
		err := coordinator.Write(ctx, ids, key, writes[key])
		fmt.Printf("write %s (%d bytes): %v\n", key, len(writes[key]), err)
	}

	// Write returned at quorum; wait for the third replica before reading
	// every copy (and before closing the transports).
	if err := coordinator.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	for _, id := range ids {
		fmt.Printf("%s holds %d keys, %d bytes\n", id, stores[id].Len(), stores[id].Bytes())
	}
	c := coordinator.Counts()
	fmt.Printf("requests %d, acked %d, failed %d, local %d\n", c.Requests, c.Acked, c.Failed, c.Local)
	// Output:
	// write user/1 (3 bytes): <nil>
	// write avatar/1 (204800 bytes): <nil>
	// n1 holds 2 keys, 204803 bytes
	// n2 holds 2 keys, 204803 bytes
	// n3 holds 2 keys, 204803 bytes
	// requests 4, acked 4, failed 0, local 2
}
