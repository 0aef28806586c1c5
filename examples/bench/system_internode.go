package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// Verbs of the bench's internode systems.
const (
	verbOneway transport.Verb = 1
	verbEcho   transport.Verb = 2
)

// internodeSystem is two transports, "a" (sender) and "b" (receiver), in
// this process. Replies from b travel on b's own connections to a, so both
// are in one Static membership.
type internodeSystem struct {
	tune func(*transport.Config) // adjusts the default config; nil for defaults
	a, b *transport.Transport

	// onewayDropped counts one-way messages a accepted and then failed
	// to write (Config.OnDropped).
	onewayDropped atomic.Uint64
}

var (
	_ System         = (*internodeSystem)(nil)
	_ WriteCounter   = (*internodeSystem)(nil)
	_ FailureCounter = (*internodeSystem)(nil)
)

// newInternode returns the internode system; tune, if not nil, changes the
// default config of both transports (for variants such as a coalescing
// strategy other than the default).
func newInternode(tune func(*transport.Config)) *internodeSystem {
	return &internodeSystem{tune: tune}
}

func (s *internodeSystem) Start(ctx context.Context, h Hooks) error {
	members := cluster.NewStatic()
	newNode := func(id cluster.NodeID) (*transport.Transport, error) {
		cfg := transport.DefaultConfig()
		cfg.NodeID = id
		cfg.ClusterName = "bench"
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Membership = members
		if s.tune != nil {
			s.tune(&cfg)
		}
		if id == "a" {
			next := cfg.OnDropped
			cfg.OnDropped = func(m transport.DroppedMessage) {
				if m.Verb == verbOneway && !m.Response {
					s.onewayDropped.Add(1)
				}
				if next != nil {
					next(m)
				}
			}
		}
		t, err := transport.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("internode %s: %w", id, err)
		}
		members.Add(cluster.Member{ID: id, Addr: t.Addr().String()})
		return t, nil
	}
	var err error
	if s.a, err = newNode("a"); err != nil {
		return err
	}
	if s.b, err = newNode("b"); err != nil {
		s.a.Close()
		return err
	}
	nothing := transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil })
	s.a.Handle(verbOneway, nothing)
	s.b.Handle(verbOneway, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		h.OnMessage(m.Payload)
		return nil, nil
	}))
	s.b.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return append([]byte(nil), m.Payload...), nil // m.Payload is reused once the handler returns
	}))
	s.a.Start()
	s.b.Start()
	return nil
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

// Writes implements WriteCounter: vectored write calls of both transports.
func (s *internodeSystem) Writes() uint64 {
	return s.a.Stats().Total().Writes + s.b.Stats().Total().Writes
}

// Failures implements FailureCounter: one-way messages a accepted and then
// dropped (reported through Config.OnDropped), plus messages b received and
// did not hand to a handler (its inbound drop counters).
func (s *internodeSystem) Failures() uint64 {
	failed := s.onewayDropped.Load()
	for _, n := range s.b.Stats().Total().DroppedInbound {
		failed += n
	}
	return failed
}

func (s *internodeSystem) Close() error {
	var errA, errB error
	if s.a != nil {
		errA = s.a.Close()
	}
	if s.b != nil {
		errB = s.b.Close()
	}
	return errors.Join(errA, errB)
}
