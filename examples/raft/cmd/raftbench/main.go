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
//	go run ./cmd/raftbench -catchup 20000        # a follower's catch-up by snapshot
//
// With -catchup N it measures instead how long a follower restarted on an
// empty store takes to catch up: the leader applies N commands, takes a
// snapshot (keeping -trailing entries of its log), one follower restarts
// at the same address with empty stores, and the time is from its start
// until its applied index reaches the leader's last index (polled every
// millisecond).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
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
	catchUpEntries := flag.Int("catchup", 0, "instead of throughput: the catch-up of a follower restarted on an empty store, after this many commands")
	trailing := flag.Uint64("trailing", 1024, "with -catchup: raft's TrailingLogs, the entries the leader keeps after its snapshot")
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

	if *catchUpEntries > 0 {
		runCatchUp(*catchUpEntries, *size, *maxInFlight, *trailing, *rounds, *only)
		return
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
				r, err := retry(func() (result, error) { return measure(net, n, *size, *maxInFlight, *duration) })
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

// retry runs a measurement again, up to twice, when its cluster lost its
// leader: on a machine too loaded for raft's timeouts that is noise, not
// a result of either transport.
func retry[T any](f func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := f()
		lost := errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader)
		if !lost || attempt == 3 {
			return v, err
		}
		fmt.Fprintf(os.Stderr, "leader lost (%v); measuring again\n", err)
	}
}

// runCatchUp measures catchUp over both transports, alternating, and
// reports the median of rounds.
func runCatchUp(entries, size, maxInFlight int, trailing uint64, rounds int, only string) {
	nets := []string{"internode", "tcp"}
	if only != "" {
		nets = []string{only}
	}
	times := map[string][]time.Duration{}
	for round := range rounds {
		for _, net := range nets {
			d, err := retry(func() (time.Duration, error) { return catchUp(net, entries, size, maxInFlight, trailing) })
			if err != nil {
				log.Fatalf("%s catch-up: %v", net, err)
			}
			fmt.Fprintf(os.Stderr, "round %d  %-9s  catch-up %v\n", round+1, net, d)
			times[net] = append(times[net], d)
		}
	}
	base := nets[len(nets)-1]
	mid := func(ds []time.Duration) time.Duration { ds = slices.Clone(ds); slices.Sort(ds); return ds[len(ds)/2] }
	for _, net := range nets {
		fmt.Printf("%-9s  catch-up %v (median of %d: %v)  %.2fx of %s\n", net, mid(times[net]).Round(time.Microsecond),
			rounds, times[net], float64(mid(times[net]))/float64(mid(times[base])), base)
	}
	fmt.Printf("(a follower restarted on an empty store, after %d commands of %d B: a %d KiB snapshot and %d trailing entries; 3 servers, in-memory stores)\n",
		entries, size, entries*size>>10, trailing)
}

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
	rafts   []*raft.Raft
	servers []raft.Server
	closes  []func()
	// restart closes server i's transport and opens a new one at the
	// same address, with the same ID.
	restart func(i int) (raft.Transport, error)
	// closeTransport closes server i's transport (raftinternode's; the
	// node's own internode transport is the cluster's to close).
	closeTransport []func()
	maxInFlight    int
}

func (c *cluster) close() {
	for _, r := range c.rafts {
		_ = r.Shutdown().Error()
	}
	for _, f := range slices.Backward(c.closes) {
		f()
	}
}

// raftConfig is both transports' raft configuration: raft's defaults,
// with snapshots taken only when asked and TrailingLogs as given.
func raftConfig(id raft.ServerID, trailingLogs uint64) *raft.Config {
	cfg := raft.DefaultConfig()
	cfg.LocalID = id
	cfg.Logger = hclog.NewNullLogger()
	if trailingLogs > 0 {
		cfg.TrailingLogs = trailingLogs
		cfg.SnapshotThreshold = math.MaxUint64 // only raft.Snapshot takes one
		cfg.SnapshotInterval = time.Hour
	}
	return cfg
}

func startCluster(net string, maxInFlight int) (*cluster, error) {
	return startClusterWith(net, maxInFlight, 0, func() raft.FSM { return discardFSM{} })
}

// startClusterWith starts three servers, each with the FSM newFSM
// returns; trailingLogs > 0 sets raft's TrailingLogs and leaves snapshots
// to raft.Snapshot.
func startClusterWith(net string, maxInFlight int, trailingLogs uint64, newFSM func() raft.FSM) (*cluster, error) {
	c := &cluster{maxInFlight: maxInFlight}
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
			c.closeTransport = append(c.closeTransport, func() { _ = tr.Close() })
			transports = append(transports, tr)
		}
		c.restart = func(i int) (raft.Transport, error) {
			c.closeTransport[i]()
			var tr *raftinternode.Transport
			// Its handlers before it starts, as a restarting process.
			if _, err := tc.RestartWith(i, func(node *transport.Transport) { tr = raftinternode.New(node, opts) }); err != nil {
				return nil, err
			}
			c.closeTransport[i] = func() { _ = tr.Close() }
			return tr, nil
		}
	case "tcp":
		newTCP := func(addr string) (*raft.NetworkTransport, error) {
			return raft.NewTCPTransportWithConfig(addr, nil, &raft.NetworkTransportConfig{
				MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: maxInFlight,
				Logger: hclog.NewNullLogger(),
			})
		}
		for range 3 {
			tr, err := newTCP("127.0.0.1:0")
			if err != nil {
				c.close()
				return nil, err
			}
			c.closeTransport = append(c.closeTransport, func() { _ = tr.Close() })
			transports = append(transports, tr)
		}
		c.restart = func(i int) (raft.Transport, error) {
			c.closeTransport[i]()
			tr, err := newTCP(string(c.servers[i].Address))
			if err != nil {
				return nil, err
			}
			c.closeTransport[i] = func() { _ = tr.Close() }
			return tr, nil
		}
	}
	c.closes = append(c.closes, func() {
		for _, f := range c.closeTransport {
			f()
		}
	})
	for _, tr := range transports {
		c.servers = append(c.servers, raft.Server{ID: raft.ServerID(tr.LocalAddr()), Address: tr.LocalAddr()})
	}
	for i, tr := range transports {
		cfg := raftConfig(c.servers[i].ID, trailingLogs)
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, tr, raft.Configuration{Servers: c.servers}); err != nil {
			c.close()
			return nil, err
		}
		r, err := raft.NewRaft(cfg, newFSM(), logs, logs, snaps, tr)
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

// catchUp measures a follower restarted on an empty store catching up
// through InstallSnapshot: the leader applies entries commands, takes a
// snapshot (which compacts its log to trailing entries), a follower is
// shut down and started again at the same address with empty stores, and
// the time is from its start until its applied index reaches the
// leader's last index.
func catchUp(net string, entries, size, maxInFlight int, trailing uint64) (time.Duration, error) {
	c, err := startClusterWith(net, maxInFlight, trailing, func() raft.FSM { return &stateFSM{} })
	if err != nil {
		return 0, err
	}
	defer c.close()
	leader, err := c.leader()
	if err != nil {
		return 0, err
	}
	cmd := make([]byte, size)
	const appliers = 64
	var wg sync.WaitGroup
	var failed atomic.Value
	for a := range appliers {
		wg.Go(func() {
			for i := a; i < entries; i += appliers {
				if err := leader.Apply(cmd, 10*time.Second).Error(); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return 0, err
	}
	if err := leader.Snapshot().Error(); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	last := leader.LastIndex()
	f := slices.IndexFunc(c.rafts, func(r *raft.Raft) bool { return r != leader })
	if err := c.rafts[f].Shutdown().Error(); err != nil {
		return 0, err
	}
	tr, err := c.restart(f)
	if err != nil {
		return 0, err
	}
	logs := raft.NewInmemStore()
	start := time.Now()
	r, err := raft.NewRaft(raftConfig(c.servers[f].ID, trailing), &stateFSM{}, logs, logs, raft.NewInmemSnapshotStore(), tr)
	if err != nil {
		return 0, err
	}
	c.rafts[f] = r
	for r.AppliedIndex() < last {
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("follower at %d of %d after a minute", r.AppliedIndex(), last)
		}
		time.Sleep(time.Millisecond) // a measurement's poll, 1 ms resolution
	}
	return time.Since(start), nil
}

// stateFSM keeps every command, so that its snapshot is as large as the
// commands applied.
type stateFSM struct {
	mu    sync.Mutex
	state []byte
}

func (f *stateFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	f.state = append(f.state, l.Data...)
	f.mu.Unlock()
	return nil
}

func (f *stateFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return stateSnapshot(slices.Clone(f.state)), nil
}

func (f *stateFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	state, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = state
	f.mu.Unlock()
	return nil
}

type stateSnapshot []byte

func (s stateSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (stateSnapshot) Release() {}

// discardFSM applies nothing: the benchmark measures replication.
type discardFSM struct{}

func (discardFSM) Apply(*raft.Log) any                 { return nil }
func (discardFSM) Snapshot() (raft.FSMSnapshot, error) { return discardSnapshot{}, nil }
func (discardFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type discardSnapshot struct{}

func (discardSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (discardSnapshot) Release()                             {}
