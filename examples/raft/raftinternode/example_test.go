package raftinternode_test

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// A three-server raft cluster over internode, in one process: each
// server's ServerID and ServerAddress are its internode node ID.
func Example() {
	opts := raftinternode.Options{}
	nodes, err := transporttest.Start(3, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	if err != nil {
		panic(err)
	}
	defer nodes.Close() // the internode transports, last

	var servers []raft.Server
	for i := range nodes.Nodes {
		id := string(nodes.ID(i))
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	var rafts []*raft.Raft
	for i, node := range nodes.Nodes {
		trans := raftinternode.New(node, opts)
		defer trans.Close() // after raft.Shutdown, below
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.Logger = hclog.NewNullLogger()
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			panic(err)
		}
		r, err := raft.NewRaft(cfg, &lastFSM{}, logs, logs, snaps, trans)
		if err != nil {
			panic(err)
		}
		defer func() { _ = r.Shutdown().Error() }()
		rafts = append(rafts, r)
	}

	for range 1000 {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				f := r.Apply([]byte("hello"), time.Second)
				if err := f.Error(); err != nil {
					panic(err)
				}
				fmt.Printf("applied %q\n", f.Response())
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("no leader")
	// Output: applied "hello"
}

// lastFSM keeps the last command applied.
type lastFSM struct{ last string }

func (f *lastFSM) Apply(l *raft.Log) any               { f.last = string(l.Data); return f.last }
func (f *lastFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (f *lastFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }
