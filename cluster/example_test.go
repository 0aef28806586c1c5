package cluster_test

import (
	"fmt"

	"github.com/internode/internode/cluster"
)

func ExampleStatic() {
	members := cluster.NewStatic(
		cluster.Member{ID: "n1", Addr: "127.0.0.1:7001"},
		cluster.Member{ID: "n2", Addr: "127.0.0.1:7002"},
	)

	// Watch before reading the members so that no change is missed.
	stop := members.Watch(func(ev cluster.Event) {
		fmt.Println(ev.Type, ev.Member.ID, ev.Member.Addr)
	})
	defer stop()

	members.Add(cluster.Member{ID: "n3", Addr: "127.0.0.1:7003"})
	members.Add(cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}) // moved
	members.Remove("n1")

	for _, m := range members.Members() {
		fmt.Println(m.ID, "at", m.Addr)
	}
	if m, ok := members.Lookup("n2"); ok {
		fmt.Println("n2 listens on", m.Addr)
	}
	// Output:
	// join n3 127.0.0.1:7003
	// update n2 127.0.0.1:8002
	// leave n1 127.0.0.1:7001
	// n2 at 127.0.0.1:8002
	// n3 at 127.0.0.1:7003
	// n2 listens on 127.0.0.1:8002
}
