package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// Verbs of the bench's internode systems.
const (
	verbOneway transport.Verb = 1
	verbEcho   transport.Verb = 2
	verbFile   transport.Verb = 3
)

// internodeSystem is two transports, "a" (sender) and "b" (receiver), in
// this process. Replies from b travel on b's own connections to a, so both
// are in one Static membership.
type internodeSystem struct {
	tunes   []func(*transport.Config) // adjust the default config, in order
	metrics bool                      // give each transport an SDK MeterProvider
	// bulkChunk, when positive, is the largest payload a scenario should
	// send in one message (internode-single-lane: the rest is split).
	bulkChunk int
	// fileOpts are SendFile's options (internode-unchecked: Unchecked).
	fileOpts []transport.FileOption

	nodes   *transporttest.Cluster
	a, b    *transport.Transport // nodes' two
	meters  *systemMetrics
	inbound transport.Limits // b's inbound limits, defaults filled in

	// onewayDropped counts one-way messages a accepted and then failed
	// to write (Config.OnDropped).
	onewayDropped atomic.Uint64

	fileMu   sync.Mutex // serializes received files into recvFile
	recvFile *os.File   // the receiver's temp file, unlinked; nil until the first transfer
}

var (
	_ System         = (*internodeSystem)(nil)
	_ WriteCounter   = (*internodeSystem)(nil)
	_ FailureCounter = (*internodeSystem)(nil)
	_ FileSender     = (*internodeSystem)(nil)
)

// newInternode returns the internode system with metrics on (an SDK meter
// provider and socket measurement); tune, if not nil, changes the default
// config of both transports (for variants such as a coalescing strategy
// other than the default).
func newInternode(tune func(*transport.Config)) *internodeSystem {
	s := &internodeSystem{metrics: true}
	if tune != nil {
		s.tunes = append(s.tunes, tune)
	}
	return s
}

// Tune adds a config adjustment, applied after the system's own; call it
// before Start.
func (s *internodeSystem) Tune(fn func(*transport.Config)) { s.tunes = append(s.tunes, fn) }

func (s *internodeSystem) Start(ctx context.Context, h Hooks) error {
	if s.metrics {
		s.meters = newSystemMetrics()
	}
	var setupErr error
	nodes, err := transporttest.Start(2, transporttest.Options{ClusterName: "bench", Tweak: func(i int, cfg *transport.Config) {
		cfg.NodeID = []cluster.NodeID{"a", "b"}[i] // a sends, b receives
		if s.meters != nil {
			mp, err := s.meters.provider(cfg.NodeID)
			setupErr = errors.Join(setupErr, err)
			cfg.Telemetry.MeterProvider = mp
		}
		for _, tune := range s.tunes {
			tune(cfg)
		}
		if i == 0 {
			next := cfg.OnDropped
			cfg.OnDropped = func(m transport.DroppedMessage) {
				if m.Verb == verbOneway && !m.Response {
					s.onewayDropped.Add(1)
				}
				if next != nil {
					next(m)
				}
			}
			return
		}
		s.inbound = cfg.Memory.Inbound
		def := transport.DefaultLimits()
		setIfZero(&s.inbound.PerConnection, def.PerConnection)
		setIfZero(&s.inbound.PerPeer, def.PerPeer)
		setIfZero(&s.inbound.Node, def.Node)
	}})
	if err == nil && setupErr != nil {
		nodes.Close()
		err = setupErr
	}
	if err != nil {
		return fmt.Errorf("internode: %w", err)
	}
	s.nodes = nodes
	s.a, s.b = nodes.Nodes[0], nodes.Nodes[1]
	nothing := transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil })
	s.a.Handle(verbOneway, nothing)
	s.b.Handle(verbOneway, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		h.OnMessage(m.Payload)
		return nil, nil
	}))
	s.b.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		if h.EchoDelay > 0 {
			time.Sleep(h.EchoDelay)
		}
		return append([]byte(nil), m.Payload...), nil // m.Payload is reused once the handler returns
	}), echoRunsOn(h))
	s.b.HandleFile(verbFile, transport.FileHandlerFunc(s.receiveFile))
	if s.meters != nil {
		s.meters.serve()
	}
	return nil
}

func setIfZero(v *int64, def int64) {
	if *v == 0 {
		*v = def
	}
}

func (s *internodeSystem) Send(ctx context.Context, payload []byte) error {
	err := s.a.Send(ctx, "b", verbOneway, payload)
	if errors.Is(err, transport.ErrOverloaded) {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

func (s *internodeSystem) Request(ctx context.Context, payload []byte) ([]byte, error) {
	resp, err := s.a.Request(ctx, "b", verbEcho, payload)
	var remote *transport.RemoteError
	if errors.Is(err, transport.ErrOverloaded) && !errors.As(err, &remote) {
		return nil, fmt.Errorf("%w: %w", ErrBusy, err) // refused locally, never sent
	}
	return resp, err
}

// internodeFilesOnly is an internode system that runs only in file
// scenarios (internode-unchecked: everything but SendFile is internode's).
type internodeFilesOnly struct{ *internodeSystem }

var _ fileOnlySystem = internodeFilesOnly{}

func (internodeFilesOnly) fileOnly() {}

// SendFile implements FileSender with transport.SendFile: a connection of
// its own, sendfile(2) from f, the receiver splices into its temp file and
// both ends check a CRC32C of the range, unless fileOpts has Unchecked.
func (s *internodeSystem) SendFile(ctx context.Context, f *os.File, n int64) error {
	_, err := s.a.SendFile(ctx, "b", verbFile, f, 0, n, s.fileOpts...)
	return err
}

// receiveFile is b's FileHandler: it overwrites the receiver's temp file
// from its start with each transfer (ReceiveTo: splice(2), then the
// checksum read back from the page cache).
func (s *internodeSystem) receiveFile(_ context.Context, ft *transport.FileTransfer) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.recvFile == nil {
		f, err := createUnlinkedTemp("bench-internode-recv-")
		if err != nil {
			return err
		}
		s.recvFile = f
	}
	if _, err := s.recvFile.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := ft.ReceiveTo(s.recvFile)
	return err
}

// Writes implements WriteCounter: vectored write calls of both transports
// (ConnStats.Writes: one net.Buffers.WriteTo each, which is one writev(2)
// unless it holds more than 1024 buffers or the socket accepts it in
// parts).
func (s *internodeSystem) Writes() uint64 {
	return s.a.Stats().Total().Writes + s.b.Stats().Total().Writes
}

// Failures implements FailureCounter: one-way messages a accepted and then
// dropped (reported through Config.OnDropped), plus messages b received and
// did not hand to a handler that a does not count (see inboundFailures).
func (s *internodeSystem) Failures() uint64 {
	return s.onewayDropped.Load() + inboundFailures(s.b)
}

// inboundFailures is what t's inbound drop counters add to its senders'
// OnDropped: the messages t dropped, but for those of the large lane. A
// large message t refused, or whose sender withdrew it or broke off
// sending it, is counted by both ends (transport.Reason: once on each
// side that saw it), and its sender tells OnDropped: counted here as well,
// it would fail twice and make lost negative. What is left out, a large
// message dropped after it arrived whole, is one that expired or that
// Close found: the bench's one-way messages have no deadline, and it
// reads the count before Close.
func inboundFailures(t *transport.Transport) uint64 {
	var failed uint64
	for _, c := range t.Stats().Conns {
		if c.Lane == routing.Large {
			continue
		}
		for _, n := range c.DroppedInbound {
			failed += n
		}
	}
	return failed
}

func (s *internodeSystem) Close() error {
	var errM, errF error
	if s.meters != nil {
		// Stop serving before the nodes close, so that a scrape sees the
		// whole system or none of it, never half-closed transports.
		s.meters.unserve()
	}
	if s.nodes != nil {
		s.nodes.Close()
	}
	if s.meters != nil {
		errM = s.meters.close()
	}
	s.fileMu.Lock()
	if s.recvFile != nil {
		errF = s.recvFile.Close()
		s.recvFile = nil
	}
	s.fileMu.Unlock()
	return errors.Join(errM, errF)
}

// createUnlinkedTemp creates a file in os.TempDir and removes its name at
// once: the open file keeps its data, and nothing is left behind even if
// the bench is killed.
func createUnlinkedTemp(prefix string) (*os.File, error) {
	f, err := os.CreateTemp("", prefix+"*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
