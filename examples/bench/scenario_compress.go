package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// The compress scenario: one internode sender and one receiver, each a
// process of its own in a network namespace of its own, joined by a veth
// pair shaped to 200 Mbit/s each way (netns_compress.go), so that the
// link, not the CPU, is what limits a plain run, as between hosts. Its
// systems are the four runs of a 2×2: JSON-like or random payloads,
// compression off or automatic.

const (
	compressRate      = "200mbit"
	compressBurst     = "128kb"
	compressPort      = "7946"
	compressSenders   = 8
	compressVerb      = transport.Verb(1)
	compressPayloads  = 4096 // distinct payloads, shared out among the senders
	compressPeerArg   = "-compress-peer"
	compressSenderID  = cluster.NodeID("sender")
	compressRecvID    = cluster.NodeID("receiver")
	compressClusterID = "bench-compress"
)

// compressSystems are the compress scenario's systems: no mesh, each run
// brings up its own two processes (New is nil).
var compressSystems = []meshEntry{
	{Name: "json-off", Doc: "compress: 1 KiB JSON-like payloads, Compression Off"},
	{Name: "json-auto", Doc: "compress: 1 KiB JSON-like payloads, Compression Auto (the default)"},
	{Name: "random-off", Doc: "compress: 1 KiB random payloads, Compression Off"},
	{Name: "random-auto", Doc: "compress: 1 KiB random payloads, Compression Auto (the default)"},
}

func init() { meshRegistry = append(meshRegistry, compressSystems...) }

var metricCompressionRatio = Metric{Key: "compression_ratio", Label: "wire/plain", Lower: true,
	Value: func(r Result) (float64, bool) { return deref(r.CompressionRatio) }}

var scenarioCompress = &Scenario{
	Name: "compress",
	Doc: "needs root: a sender and a receiver process in two network namespaces joined by a veth pair shaped with " +
		"tc tbf to 200 Mbit/s each way; -senders (8) unpaced senders of 1 KiB one-way messages, JSON-like " +
		"(compressible) or random, Compression Off or Auto; msgs/s at the receiver, CPU µs per message of both " +
		"processes together, and the bytes on the wire per plain byte of the frames sent",
	OptIn:       true,
	Systems:     []string{"json-off", "json-auto", "random-off", "random-auto"},
	PayloadSize: func(Options) int { return 1 << 10 },
	Unavailable: linkUnavailable,
	Measure:     measureCompress,
	Targets: []Target{
		{Metric: metricMsgsPerSec, System: "json-auto", Baseline: "json-off", Min: 2},
		{Metric: metricMsgsPerSec, System: "random-auto", Baseline: "random-off", Min: 0.95},
	},
	Columns:    []Metric{metricCompressionRatio},
	Chart:      []Metric{metricMsgsPerSec},
	MoreCharts: [][]Metric{{metricCPUPerMsg}},
}

// compressPeerConfig is what a peer process is told, as JSON.
type compressPeerConfig struct {
	Listen, PeerAddr string
	Compression      transport.Compression
	Random           bool // random payloads, else JSON-like
	Senders          int
}

// measureCompress is the compress scenario's Measure: in this (child)
// process, make the shaped link, start the receiver and then the sender
// in their namespaces, measure the receiver's deliveries and both
// processes' CPU over -duration after -warmup, stop the senders and wait
// up to -drain for every message sent to arrive.
func measureCompress(system string, opts Options) (Result, error) {
	res := Result{PayloadBytes: 1 << 10, Repeats: 1}
	random, mode, err := parseCompressSystem(system)
	if err != nil {
		return res, err
	}
	link, err := newShapedLink(compressRate, compressBurst)
	if err != nil {
		return res, err
	}
	defer link.close()
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	cfg := compressPeerConfig{Compression: mode, Random: random, Senders: opts.sendersOr(compressSenders)}
	cfg.Listen, cfg.PeerAddr = link.recvAddr+":"+compressPort, link.sendAddr+":"+compressPort
	recv, err := startCompressPeer(link.command(link.recvNS, exe, compressPeerArg, "receive", mustJSON(cfg)))
	if err != nil {
		return res, err
	}
	defer recv.close()
	cfg.Listen, cfg.PeerAddr = link.sendAddr+":"+compressPort, link.recvAddr+":"+compressPort
	send, err := startCompressPeer(link.command(link.sendNS, exe, compressPeerArg, "send", mustJSON(cfg)))
	if err != nil {
		return res, err
	}
	defer send.close()

	time.Sleep(opts.Warmup)
	start := time.Now()
	r0, s0, err := markBoth(recv, send)
	if err != nil {
		return res, err
	}
	time.Sleep(opts.Duration)
	r1, s1, err := markBoth(recv, send)
	elapsed := time.Since(start).Seconds()
	if err != nil {
		return res, err
	}
	delivered := r1[0] - r0[0]
	res.Seconds = elapsed
	res.MsgsPerSec = float64(delivered) / elapsed
	res.MBPerSec = float64(r1[2]-r0[2]) / elapsed / 1e6
	if delivered > 0 {
		cpu := time.Duration(r1[1] - r0[1] + s1[1] - s0[1])
		res.CPUusPerMsg = float64(cpu.Microseconds()) / float64(delivered)
	}
	if plain := s1[2] - s0[2]; plain > 0 {
		ratio := float64(s1[3]-s0[3]) / float64(plain)
		res.CompressionRatio = &ratio
	} else if mode == transport.CompressionOff || random {
		one := 1.0 // every frame as it was
		res.CompressionRatio = &one
	}

	sent, err := send.ask("stop")
	if err != nil {
		return res, err
	}
	res.Sent = sent[0]
	deadline := time.Now().Add(opts.Drain)
	for {
		got, err := recv.ask("mark")
		if err != nil {
			return res, err
		}
		res.Delivered = got[0]
		if res.Delivered >= res.Sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Drained = res.Delivered >= res.Sent
	res.Lost = int64(res.Sent) - int64(res.Delivered)
	if load, ok := loadAverage(); ok {
		res.LoadAvg = &load
	}
	return res, errors.Join(send.close(), recv.close())
}

func parseCompressSystem(system string) (random bool, mode transport.Compression, err error) {
	payload, m, ok := strings.Cut(system, "-")
	switch {
	case !ok || payload != "json" && payload != "random":
		return false, 0, fmt.Errorf("compress: unknown system %q", system)
	case m == "off":
		mode = transport.CompressionOff
	case m == "auto":
		mode = transport.CompressionAuto
	case m == "on":
		mode = transport.CompressionOn
	default:
		return false, 0, fmt.Errorf("compress: unknown system %q", system)
	}
	return payload == "random", mode, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// markBoth asks both peers for their counters.
func markBoth(recv, send *compressPeer) (r, s []uint64, err error) {
	if r, err = recv.ask("mark"); err != nil {
		return nil, nil, err
	}
	s, err = send.ask("mark")
	return r, s, err
}

// compressPeer is a running peer process, spoken to over its stdin and
// stdout: one command a line, one line of numbers in answer.
type compressPeer struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	once sync.Once
	err  error
}

// startCompressPeer starts cmd and waits for its "ready" line.
func startCompressPeer(cmd *exec.Cmd) (*compressPeer, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &compressPeer{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if !p.out.Scan() || p.out.Text() != "ready" {
		p.close()
		return nil, fmt.Errorf("compress: %s did not start: %q", strings.Join(cmd.Args, " "), p.out.Text())
	}
	return p, nil
}

func (p *compressPeer) ask(command string) ([]uint64, error) {
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		return nil, err
	}
	if !p.out.Scan() {
		return nil, fmt.Errorf("compress: peer ended: %v", p.out.Err())
	}
	var nums []uint64
	for _, f := range strings.Fields(p.out.Text()) {
		var n uint64
		if _, err := fmt.Sscan(f, &n); err != nil {
			return nil, fmt.Errorf("compress: peer said %q", p.out.Text())
		}
		nums = append(nums, n)
	}
	return nums, nil
}

// close ends the peer (closing its stdin makes it exit) and waits for it.
func (p *compressPeer) close() error {
	p.once.Do(func() {
		p.in.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case p.err = <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			p.err = errors.Join(errors.New("compress: peer did not exit"), <-done)
		}
	})
	return p.err
}

// runCompressPeer is a peer process's side: args are its role, "send" or
// "receive", and its compressPeerConfig.
func runCompressPeer(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "send" && args[0] != "receive" {
		return fmt.Errorf("%s: want send or receive, and a config", compressPeerArg)
	}
	var pc compressPeerConfig
	if err := json.Unmarshal([]byte(args[1]), &pc); err != nil {
		return fmt.Errorf("%s: config: %w", compressPeerArg, err)
	}
	self, peer := compressRecvID, compressSenderID
	if args[0] == "send" {
		self, peer = peer, self
	}
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = self, compressClusterID, pc.Listen
	cfg.Membership = cluster.NewStatic(cluster.Member{ID: peer, Addr: pc.PeerAddr})
	cfg.Lanes.Compression = [routing.NumLanes]transport.Compression{pc.Compression, pc.Compression, pc.Compression}
	cfg.Memory.WaitForCapacity = true
	tr, err := transport.New(cfg)
	if err != nil {
		return err
	}
	var delivered, bytes atomic.Uint64
	tr.Handle(compressVerb, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		delivered.Add(1)
		bytes.Add(uint64(len(m.Payload)))
		return nil, nil
	}))
	tr.Start()
	defer tr.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var senders sync.WaitGroup
	var sent atomic.Uint64
	if args[0] == "send" {
		payloads := compressPayloadSet(pc.Random)
		// Each sender cycles through a share of the payloads of its own: a
		// frame then never holds the same random payload twice (senders that
		// shared the set moved through it in step, and their frames of
		// "random" payloads compressed).
		share := max(len(payloads)/pc.Senders, 1)
		for k := range pc.Senders {
			own := payloads[k*share%len(payloads):][:share]
			senders.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					if tr.Send(ctx, compressRecvID, compressVerb, own[i%len(own)]) == nil {
						sent.Add(1)
					}
				}
			})
		}
	}
	fmt.Fprintln(stdout, "ready")
	commands := bufio.NewScanner(stdin)
	for commands.Scan() {
		switch commands.Text() {
		case "mark":
			cpu := processCPU().Nanoseconds()
			if args[0] == "send" {
				t := tr.Stats().Total()
				fmt.Fprintln(stdout, sent.Load(), cpu, t.CompressionIn, t.CompressionOut)
			} else {
				fmt.Fprintln(stdout, delivered.Load(), cpu, bytes.Load())
			}
		case "stop":
			cancel()
			senders.Wait()
			fmt.Fprintln(stdout, sent.Load())
		default:
			return fmt.Errorf("%s: unknown command %q", compressPeerArg, commands.Text())
		}
	}
	cancel()
	senders.Wait()
	return nil
}

// compressPayloadSet returns compressPayloads payloads of 1 KiB:
// random bytes, or JSON documents such as a database replicates — field
// names repeat, values are drawn from small vocabularies and random IDs.
func compressPayloadSet(random bool) [][]byte {
	r := rand.New(rand.NewPCG(42, 1))
	out := make([][]byte, compressPayloads)
	for i := range out {
		if random {
			p := make([]byte, 1<<10)
			for j := range p {
				p[j] = byte(r.Uint32())
			}
			out[i] = p
			continue
		}
		out[i] = jsonDocument(r, 1<<10)
	}
	return out
}

var (
	firstNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"}
	cities     = []string{"Lyon", "Paris", "Berlin", "Madrid", "Lisbon", "Oslo", "Vienna", "Prague", "Dublin", "Rome", "Zurich", "Warsaw"}
	words      = strings.Fields("the quick brown fox jumps over a lazy dog while replicas agree on an order of writes " +
		"each node stores a range of keys and gossips its state to peers every second so that failures are seen " +
		"early and repairs stream the missing rows from a healthy replica")
)

// jsonDocument returns a JSON document of exactly n bytes.
func jsonDocument(r *rand.Rand, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":"%016x","table":"users","ts":%d,"version":%d,"user":{"name":"%s","email":"%s%d@example.com","city":"%s","age":%d},"tags":[`,
		r.Uint64(), 1_700_000_000_000+r.Int64N(1e9), r.IntN(1000), firstNames[r.IntN(len(firstNames))],
		firstNames[r.IntN(len(firstNames))], r.IntN(10000), cities[r.IntN(len(cities))], 18+r.IntN(70))
	for i := range 3 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s"`, words[r.IntN(len(words))])
	}
	b.WriteString(`],"events":[`)
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"%s","at":%d,"score":%d.%02d}`, words[r.IntN(len(words))], 1_700_000_000+r.IntN(1e6), r.IntN(100), r.IntN(100))
	}
	b.WriteString(`],"note":"`)
	for b.Len() < n-2 {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	s := b.String()[:n-2] + `"}`
	return []byte(s)
}
