// Command raftbench measures hashicorp/raft's apply throughput and commit
// latency over internode (raftinternode) and over raft's own
// NetworkTransport, on a 3-server cluster in one process with in-memory
// stores, on loopback.
//
// Each measurement starts a fresh cluster, applies commands of -size bytes
// from -inflight concurrent appliers (each waits for its future before the
// next, so that many futures are in flight) for -duration, and reports
// applies per second and the 50th and 99th percentile of the time from
// Apply to its future's return (commit on a quorum and apply on the
// leader). The transports alternate, and the report is the median of
// -rounds rounds.
//
//	go run ./cmd/raftbench                       # 1, 16, 256 in flight, 3 rounds
//	go run ./cmd/raftbench -inflight 256 -duration 5s
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func main() {
	inflightFlag := flag.String("inflight", "1,16,256", "futures in flight, comma-separated")
	duration := flag.Duration("duration", 2*time.Second, "length of one measurement")
	rounds := flag.Int("rounds", 3, "rounds; the report is their median")
	size := flag.Int("size", 128, "command size in bytes")
	maxInFlight := flag.Int("pipeline", raft.DefaultMaxRPCsInFlight, "MaxRPCsInFlight of both transports' append pipelines")
	flag.BoolVar(&socketMeasurement, "socket-measurement", true, "internode reads its sockets' queue depths (Telemetry.DisableSocketMeasurement off)")
	only := flag.String("only", "", "measure only this transport: internode or tcp")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	var inflights []int
	for _, s := range strings.Split(*inflightFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad -inflight %q", s)
		}
		inflights = append(inflights, n)
	}
	nets := []string{"internode", "tcp"}
	if *only != "" {
		nets = []string{*only}
	}
	type key struct {
		net      string
		inflight int
	}
	results := map[key][]result{}
	for round := range *rounds {
		for _, n := range inflights {
			for _, net := range nets {
				r, err := measure(net, n, *size, *maxInFlight, *duration)
				if err != nil {
					log.Fatalf("%s, %d in flight: %v", net, n, err)
				}
				fmt.Fprintf(os.Stderr, "round %d  %-9s  %3d in flight  %8.0f/s  p50 %v  p99 %v\n",
					round+1, net, n, r.perSecond, r.p50, r.p99)
				results[key{net, n}] = append(results[key{net, n}], r)
			}
		}
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "in flight\ttransport\tapplies/s\tp50\tp99\tthroughput vs %s\tp99 vs %s\t\n", nets[len(nets)-1], nets[len(nets)-1])
	for _, n := range inflights {
		base := median(results[key{nets[len(nets)-1], n}])
		for _, net := range nets {
			m := median(results[key{net, n}])
			fmt.Fprintf(w, "%d\t%s\t%.0f\t%v\t%v\t%.2fx\t%.2fx\t\n", n, net, m.perSecond,
				m.p50.Round(time.Microsecond), m.p99.Round(time.Microsecond),
				m.perSecond/base.perSecond, float64(m.p99)/float64(base.p99))
		}
	}
	_ = w.Flush()
	fmt.Printf("(%d B commands, 3 servers, in-memory stores, median of %d rounds of %v, MaxRPCsInFlight %d)\n",
		*size, *rounds, *duration, *maxInFlight)
}

var socketMeasurement bool

type result struct {
	perSecond float64
	p50, p99  time.Duration
}

// median takes each figure's median separately.
func median(rs []result) result {
	ps := make([]float64, len(rs))
	p50s := make([]time.Duration, len(rs))
	p99s := make([]time.Duration, len(rs))
	for i, r := range rs {
		ps[i], p50s[i], p99s[i] = r.perSecond, r.p50, r.p99
	}
	slices.Sort(ps)
	slices.Sort(p50s)
	slices.Sort(p99s)
	mid := len(rs) / 2
	return result{ps[mid], p50s[mid], p99s[mid]}
}

// cluster is three raft servers and what closes them.
type cluster struct {
	rafts  []*raft.Raft
	closes []func()
}

func (c *cluster) close() {
	for _, r := range c.rafts {
		_ = r.Shutdown().Error()
	}
	for _, f := range slices.Backward(c.closes) {
		f()
	}
}

func startCluster(net string, maxInFlight int) (*cluster, error) {
	c := &cluster{}
	var transports []raft.Transport
	switch net {
	case "internode":
		opts := raftinternode.Options{MaxInFlight: maxInFlight}
		tc, err := transporttest.Start(3, transporttest.Options{
			Tweak: func(_ int, cfg *transport.Config) {
				opts.Configure(cfg)
				cfg.Telemetry.DisableSocketMeasurement = !socketMeasurement
			},
		})
		if err != nil {
			return nil, err
		}
		c.closes = append(c.closes, tc.Close)
		for _, node := range tc.Nodes {
			tr := raftinternode.New(node, opts)
			c.closes = append(c.closes, func() { _ = tr.Close() })
			transports = append(transports, tr)
		}
	case "tcp":
		for range 3 {
			tr, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, &raft.NetworkTransportConfig{
				MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: maxInFlight,
				Logger: hclog.NewNullLogger(),
			})
			if err != nil {
				c.close()
				return nil, err
			}
			c.closes = append(c.closes, func() { _ = tr.Close() })
			transports = append(transports, tr)
		}
	}
	var servers []raft.Server
	for _, tr := range transports {
		servers = append(servers, raft.Server{ID: raft.ServerID(tr.LocalAddr()), Address: tr.LocalAddr()})
	}
	for i, tr := range transports {
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.Logger = hclog.NewNullLogger()
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, tr, raft.Configuration{Servers: servers}); err != nil {
			c.close()
			return nil, err
		}
		r, err := raft.NewRaft(cfg, discardFSM{}, logs, logs, snaps, tr)
		if err != nil {
			c.close()
			return nil, err
		}
		c.rafts = append(c.rafts, r)
	}
	return c, nil
}

func (c *cluster) leader() (*raft.Raft, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				return r, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader in 10s")
}

func measure(net string, inflight, size, maxInFlight int, d time.Duration) (result, error) {
	c, err := startCluster(net, maxInFlight)
	if err != nil {
		return result{}, err
	}
	defer c.close()
	leader, err := c.leader()
	if err != nil {
		return result{}, err
	}
	cmd := make([]byte, size)
	// Warm up: connections, pipelines, buffers.
	warm := time.Now().Add(d / 4)
	if err := run(leader, cmd, inflight, warm, nil); err != nil {
		return result{}, err
	}
	lat := make([][]time.Duration, inflight)
	start := time.Now()
	if err := run(leader, cmd, inflight, start.Add(d), lat); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, fmt.Errorf("nothing applied")
	}
	return result{
		perSecond: float64(len(all)) / elapsed.Seconds(),
		p50:       all[len(all)*50/100],
		p99:       all[len(all)*99/100],
	}, nil
}

// run applies cmd from n appliers until the deadline, recording each
// apply's latency in lat[applier] when lat is not nil.
func run(r *raft.Raft, cmd []byte, n int, until time.Time, lat [][]time.Duration) error {
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		wg.Go(func() {
			for time.Now().Before(until) {
				t0 := time.Now()
				if err := r.Apply(cmd, 10*time.Second).Error(); err != nil {
					failed.Store(err)
					return
				}
				if lat != nil {
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}

// discardFSM applies nothing: the benchmark measures replication.
type discardFSM struct{}

func (discardFSM) Apply(*raft.Log) any                 { return nil }
func (discardFSM) Snapshot() (raft.FSMSnapshot, error) { return discardSnapshot{}, nil }
func (discardFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type discardSnapshot struct{}

func (discardSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (discardSnapshot) Release()                             {}
