package main

import (
	"context"
	"fmt"
	"strings"
)

// mesh is N nodes of one messaging system in this process, connected all
// to all over 127.0.0.1: the systems of the saturate and idle scenarios,
// which measure the whole process (see child.go). Nodes are numbered from
// 0.
//
// start and close are called once each, from one goroutine; send is called
// from many goroutines at once, only between them.
type mesh interface {
	// start brings up n nodes. Node to calls deliver for each message it
	// receives; payload is valid only during the call. deliver is safe for
	// concurrent use.
	start(n int, deliver func(to int, payload []byte)) error
	// send sends payload one way from node from to node to, on the same
	// terms as System.Send: it returns once the message is accepted, the
	// caller never modifies payload afterwards, and an error wrapping
	// ErrBusy means "refused for lack of capacity".
	send(ctx context.Context, from, to int, payload []byte) error
	// close stops every node and waits for every goroutine the mesh owns.
	close() error
}

// accountedMesh is a mesh whose nodes count what they hold and drop
// (internode's Stats and OnDropped).
type accountedMesh interface {
	mesh
	FailureCounter
	// accounts sums, over the nodes, the bytes they count now.
	accounts() meshAccounts
	// nodeLimits is the sum, over the nodes, of Outbound.Node and
	// Inbound.Node (defaults filled in); rssBound reports whether every
	// node's Node limits, both ways, are at most rssBoundNodeLimit.
	nodeLimits() (sum int64, rssBound bool)
}

// meshAccounts are byte counts summed over a mesh's nodes.
type meshAccounts struct {
	// counted is Stats.OutboundBytes + Stats.InboundHeld: the outbound
	// node reserve in use and every byte of inbound capacity held.
	counted int64
	// held is the sum of ConnStats.PendingBytes (outbound bytes queued or
	// being written, connections' own capacity included) plus InboundHeld:
	// everything Stats shows held, both ways.
	held int64
}

// meshEntry names a mesh constructor.
type meshEntry struct {
	Name string
	Doc  string
	New  func(Options) mesh
}

// meshRegistry lists the systems of the scenarios with Measure (saturate,
// idle). A name may also be in systemRegistry ("internode"): the scenario
// decides which registry a name is looked up in.
var meshRegistry = []meshEntry{
	{Name: "internode", Doc: "internode transports, default config but the limits of -out-node, -in-node, -per-peer, -per-conn; no MeterProvider",
		New: func(o Options) mesh { return newInternodeMesh(o.Limits, nil) }},
	{Name: "raw-tcp-mesh", Doc: "one TCP connection per ordered pair, the raw-tcp-batched writer with 64 KiB of pending bytes per connection, a 64 KiB bufio.Reader",
		New: func(Options) mesh { return newRawMesh() }},
}

func findMesh(name string) (meshEntry, bool) {
	for _, e := range meshRegistry {
		if e.Name == name {
			return e, true
		}
	}
	return meshEntry{}, false
}

// meshSystems resolves -systems for a scenario with Measure, as
// systemsFor does for the others: "" and "all" select its Systems; a list,
// those of its Systems it names (skipped: the rest of the list).
func (sc *Scenario) meshSystems(list string) (systems []systemEntry, skipped []string) {
	want := map[string]bool{}
	if list != "" && list != "all" {
		for _, name := range strings.Split(list, ",") {
			want[strings.TrimSpace(name)] = true
		}
	}
	mine := map[string]bool{}
	for _, name := range sc.Systems {
		mine[name] = true
		if list == "" || list == "all" || want[name] {
			e, _ := findMesh(name)
			systems = append(systems, systemEntry{Name: e.Name, Doc: e.Doc})
		}
	}
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); want[name] && !mine[name] {
			skipped = append(skipped, name)
		}
	}
	return systems, skipped
}

// meshNodes returns -nodes, or def when it was not given, and checks it.
func meshNodes(o Options, def int) (int, error) {
	n := def
	if o.Nodes > 0 {
		n = o.Nodes
	}
	if n < 2 || n > 1<<16 {
		return 0, fmt.Errorf("-nodes %d: need 2 to 65536 nodes", n)
	}
	return n, nil
}
