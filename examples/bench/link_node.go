package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// Each cell of the link command runs two processes of this command, one
// in the sender's namespace and one in the receiver's (ip netns exec), so
// that every byte crosses the emulated link. linkNodeArg, as the first
// argument, makes the command such a process; the rest of the command line
// is its role ("sender" or "receiver") and the cell in JSON.
const linkNodeArg = "-link-node"

// Ports in the namespaces (which are fresh, so nothing else uses them).
const (
	linkInternodePort = "7000"
	linkRawPort       = "7001"
)

// linkCell is one measurement: a system, a workload, a topology.
type linkCell struct {
	Topology string
	System   string // a coalescing strategy name, or raw-nagle / raw-nodelay
	Workload string // "oneway" or "rr"
	Payload  int
	Rate     int // oneway: messages/s in total
	InFlight int // rr: requests outstanding
	Warmup   time.Duration
	Duration time.Duration
	SendAddr string
	RecvAddr string
	SendDev  string
	Record   string // a directory for the sender's small-lane arrival traces (-record); "" for none
}

// linkResult is the sender's account of one cell, completed by the parent
// with the receiver's.
type linkResult struct {
	Msgs    uint64  // messages delivered (oneway) or requests answered (rr) in the window
	Seconds float64 // length of the window
	Packets uint64  // packets the sender's veth sent in the window
	P50us   float64
	P99us   float64
	// The small lane's coalescing, over the whole run (internode only).
	Writes       uint64
	Waited       uint64
	RequestedAvg float64 // µs per waited write
	ObservedAvg  float64 // µs per waited write
	Messages     uint64  // messages written (MsgsPerWrite = Messages/Writes)
	Bytes        uint64  // their encoded bytes, frame headers not counted
	WindowUs     float64 // the window at the end (Adaptive's tuned one)
	EarlyFlushes uint64
	Growths      uint64 // window moves (Adaptive)
	Shrinks      uint64
	Error        string `json:",omitempty"`
}

// linkReceiverReport is what the receiver prints when its stdin closes:
// one-way messages stamped as measured, and their latency.
type linkReceiverReport struct {
	Count uint64
	P50us float64
	P99us float64
}

// Stamp of a one-way payload: intended send time (Unix ns; both processes
// read the same clock) and whether it falls inside the measured window.
const linkStampLen = 9

func isRawLink(system string) bool { return strings.HasPrefix(system, "raw-") }

// runLinkNode is the child's side.
func runLinkNode(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("%s: want a role and a cell", linkNodeArg)
	}
	var cell linkCell
	if err := json.Unmarshal([]byte(args[1]), &cell); err != nil {
		return fmt.Errorf("%s: cell: %w", linkNodeArg, err)
	}
	switch args[0] {
	case "receiver":
		return runLinkReceiver(cell, stdin, stdout)
	case "sender":
		res, err := runLinkSender(cell)
		if err != nil {
			res.Error = err.Error()
		}
		return json.NewEncoder(stdout).Encode(res)
	}
	return fmt.Errorf("%s: unknown role %q", linkNodeArg, args[0])
}

// latencyHist is a histogram safe for concurrent use.
type latencyHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func (l *latencyHist) record(d time.Duration) {
	l.mu.Lock()
	_ = l.h.RecordValue(d.Nanoseconds())
	l.mu.Unlock()
}

func (l *latencyHist) quantiles() (p50, p99 float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.h.ValueAtQuantile(50)) / 1e3, float64(l.h.ValueAtQuantile(99)) / 1e3
}

// linkMembers is the static membership both processes share.
func linkMembers(cell linkCell) *cluster.Static {
	return cluster.NewStatic(
		cluster.Member{ID: "a", Addr: net.JoinHostPort(cell.SendAddr, linkInternodePort)},
		cluster.Member{ID: "b", Addr: net.JoinHostPort(cell.RecvAddr, linkInternodePort)})
}

// startLinkTransport starts node id ("a" or "b") with the cell's strategy
// on the small and large lanes (the urgent lane stays Disabled).
func startLinkTransport(cell linkCell, id cluster.NodeID, addr string) (*transport.Transport, error) {
	factory, err := coalescing.ByName(cell.System, 0)
	if err != nil {
		return nil, err
	}
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName = id, "link"
	cfg.ListenAddr = net.JoinHostPort(addr, linkInternodePort)
	cfg.Membership = linkMembers(cell)
	cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
		switch {
		case lane == routing.Urgent:
			return coalescing.NewDisabled()
		case lane == routing.Small && cell.Record != "" && id == "a":
			return recordArrivals(factory(), cell.Record, cell)
		}
		return factory()
	}
	t, err := transport.New(cfg)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// runLinkReceiver serves the cell's system until stdin closes, then prints
// its report.
func runLinkReceiver(cell linkCell, stdin io.Reader, stdout io.Writer) error {
	hist := &latencyHist{h: newHistogram()}
	var count atomic.Uint64
	onOneway := func(p []byte) {
		if len(p) >= linkStampLen && p[8] == 1 {
			intended := time.Unix(0, int64(binary.LittleEndian.Uint64(p))) //nolint:gosec // a stamp we wrote
			hist.record(time.Since(intended))
			count.Add(1)
		}
	}
	var stop func()
	if isRawLink(cell.System) {
		ln, err := net.Listen("tcp", net.JoinHostPort(cell.RecvAddr, linkRawPort))
		if err != nil {
			return err
		}
		var conns sync.WaitGroup
		var mu sync.Mutex
		var open []net.Conn
		conns.Add(1)
		go func() {
			defer conns.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*net.TCPConn).SetNoDelay(cell.System == "raw-nodelay")
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
				w := &naiveWriter{conn: c}
				conns.Add(1)
				go func() {
					defer conns.Done()
					_ = readFrames(bufio.NewReader(c), func(kind byte, id uint64, payload []byte) {
						if kind == rawRequest {
							_ = w.writeFrame(rawResponse, id, payload)
							return
						}
						onOneway(payload)
					})
				}()
			}
		}()
		stop = func() {
			ln.Close()
			mu.Lock()
			for _, c := range open {
				c.Close()
			}
			mu.Unlock()
			conns.Wait()
		}
	} else {
		t, err := startLinkTransport(cell, "b", cell.RecvAddr)
		if err != nil {
			return err
		}
		t.Handle(verbOneway, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
			onOneway(m.Payload)
			return nil, nil
		}))
		t.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
			return append([]byte(nil), m.Payload...), nil
		}), transport.Concurrent(echoConcurrency))
		t.Start()
		stop = func() { _ = t.Close() }
	}
	fmt.Fprintln(stdout, "ready")
	_, _ = io.Copy(io.Discard, stdin) // until the parent closes it
	stop()
	rep := linkReceiverReport{Count: count.Load()}
	rep.P50us, rep.P99us = hist.quantiles()
	return json.NewEncoder(stdout).Encode(rep)
}

// linkClient is the sender's end of a system.
type linkClient interface {
	send(payload []byte) error
	request(ctx context.Context, payload []byte) ([]byte, error)
	close()
}

type internodeLinkClient struct{ t *transport.Transport }

func (c internodeLinkClient) send(p []byte) error {
	return c.t.Send(context.Background(), "b", verbOneway, p)
}

func (c internodeLinkClient) request(ctx context.Context, p []byte) ([]byte, error) {
	return c.t.Request(ctx, "b", verbEcho, p)
}

func (c internodeLinkClient) close() { _ = c.t.Close() }

// rawLinkClient is one TCP connection, one Write per message under a mutex,
// Nagle on or off.
type rawLinkClient struct {
	conn    net.Conn
	w       *naiveWriter
	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan []byte
	done    chan struct{}
}

func dialRawLink(cell linkCell) (*rawLinkClient, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(cell.RecvAddr, linkRawPort), 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.(*net.TCPConn).SetNoDelay(cell.System == "raw-nodelay")
	c := &rawLinkClient{conn: conn, w: &naiveWriter{conn: conn}, pending: make(map[uint64]chan []byte), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = readFrames(bufio.NewReader(conn), func(_ byte, id uint64, payload []byte) {
			c.mu.Lock()
			ch := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- append([]byte(nil), payload...)
			}
		})
	}()
	return c, nil
}

func (c *rawLinkClient) send(p []byte) error { return c.w.writeFrame(rawOneway, 0, p) }

func (c *rawLinkClient) request(ctx context.Context, p []byte) ([]byte, error) {
	id := c.nextID.Add(1)
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.w.writeFrame(rawRequest, id, p); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-c.done:
		return nil, errRawClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *rawLinkClient) close() {
	c.conn.Close()
	<-c.done
}

// runLinkSender drives the cell's workload through the link and measures
// it: warm-up, then the window, in which the sender's veth packets and
// the latencies are counted.
func runLinkSender(cell linkCell) (linkResult, error) {
	var client linkClient
	var node *transport.Transport
	if isRawLink(cell.System) {
		c, err := dialRawLink(cell)
		if err != nil {
			return linkResult{}, err
		}
		client = c
	} else {
		t, err := startLinkTransport(cell, "a", cell.SendAddr)
		if err != nil {
			return linkResult{}, err
		}
		t.Start()
		node, client = t, internodeLinkClient{t}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var windowStart, windowEnd atomic.Int64 // Unix ns; 0 until set
	inWindow := func(t time.Time) bool {
		s, e := windowStart.Load(), windowEnd.Load()
		return s != 0 && t.UnixNano() >= s && (e == 0 || t.UnixNano() < e)
	}
	hist := &latencyHist{h: newHistogram()}
	var answered atomic.Uint64
	var stopping atomic.Bool
	var load sync.WaitGroup
	payload := make([]byte, max(cell.Payload, linkStampLen))
	switch cell.Workload {
	case "oneway":
		const senders = 4
		interval := time.Duration(float64(time.Second) * senders / float64(cell.Rate))
		start := time.Now()
		for i := range senders {
			load.Add(1)
			go func() {
				defer load.Done()
				timer := time.NewTimer(time.Hour)
				defer timer.Stop()
				for n := 0; !stopping.Load(); n++ {
					intended := start.Add(interval*time.Duration(i)/senders + interval*time.Duration(n))
					if wait := time.Until(intended); wait > 0 {
						timer.Reset(wait)
						<-timer.C
					}
					msg := append([]byte(nil), payload...)
					binary.LittleEndian.PutUint64(msg, uint64(intended.UnixNano())) //nolint:gosec // after 1970
					if inWindow(intended) {
						msg[8] = 1
					}
					_ = client.send(msg) // a refusal shows as a message not delivered
				}
			}()
		}
	case "rr":
		for range cell.InFlight {
			load.Add(1)
			go func() {
				defer load.Done()
				for !stopping.Load() {
					begin := time.Now()
					if _, err := client.request(ctx, payload); err != nil {
						if ctx.Err() != nil {
							return
						}
						time.Sleep(time.Millisecond)
						continue
					}
					if inWindow(begin) {
						hist.record(time.Since(begin))
						answered.Add(1)
					}
				}
			}()
		}
	default:
		return linkResult{}, fmt.Errorf("unknown workload %q", cell.Workload)
	}

	time.Sleep(cell.Warmup)
	before, err := txPackets(cell.SendDev)
	if err != nil {
		return linkResult{}, err
	}
	begin := time.Now()
	windowStart.Store(begin.UnixNano())
	time.Sleep(cell.Duration)
	end := time.Now()
	windowEnd.Store(end.UnixNano())
	after, err := txPackets(cell.SendDev)
	if err != nil {
		return linkResult{}, err
	}
	stopping.Store(true)
	if cell.Workload == "oneway" {
		time.Sleep(time.Second) // let the window's messages arrive before the receiver reports
	}
	cancel()
	load.Wait()

	res := linkResult{Msgs: answered.Load(), Seconds: end.Sub(begin).Seconds(), Packets: after - before}
	res.P50us, res.P99us = hist.quantiles()
	if node != nil {
		for _, c := range node.Stats().Conns {
			if c.Lane == routing.Small {
				s := c.Coalescing
				res.Writes, res.Waited, res.Messages, res.Bytes = s.Writes, s.Waited, s.Messages, s.Bytes
				res.WindowUs = float64(s.Window.Microseconds())
				res.EarlyFlushes, res.Growths, res.Shrinks = s.EarlyFlushes, s.WindowGrowths, s.WindowShrinks
				if s.Waited > 0 {
					res.RequestedAvg = float64(s.RequestedWait.Microseconds()) / float64(s.Waited)
					res.ObservedAvg = float64(s.ObservedWait.Microseconds()) / float64(s.Waited)
				}
			}
		}
	}
	client.close()
	if err := writeLinkRecords(); err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return res, nil
	}
	return res, ctx.Err()
}

// linkSelf returns this command's executable, for the child processes.
func linkSelf() (string, error) { return os.Executable() }
