package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// verbUrgent is the idle scenario's verb on the urgent lane (a
// LaneOverrides entry); the mesh delivers it like verbOneway.
const verbUrgent transport.Verb = 4

// internodeMesh is N transports, "n0", "n1"..., in one Static membership.
// Each runs DefaultConfig with the mesh's limits, the default (no-op)
// MeterProvider and, for the idle scenario, its tune.
type internodeMesh struct {
	limits meshLimits
	tune   func(*transport.Config) // nil: none

	cluster *transporttest.Cluster
	nodes   []*transport.Transport // cluster's
	ids     []cluster.NodeID
	out, in transport.Limits // of every node, defaults filled in
	dropped atomic.Uint64    // messages accepted and then dropped (OnDropped), responses aside
}

var _ accountedMesh = (*internodeMesh)(nil)

func newInternodeMesh(limits meshLimits, tune func(*transport.Config)) *internodeMesh {
	return &internodeMesh{limits: limits, tune: tune}
}

func (m *internodeMesh) start(n int, deliver func(to int, payload []byte)) error {
	nodes, err := transporttest.Start(n, transporttest.Options{ClusterName: "bench", Tweak: func(i int, cfg *transport.Config) {
		m.limits.apply(cfg)
		cfg.OnDropped = func(d transport.DroppedMessage) {
			if !d.Response {
				m.dropped.Add(1)
			}
		}
		if m.tune != nil {
			m.tune(cfg)
		}
		m.out, m.in = cfg.Memory.Outbound, cfg.Memory.Inbound
	}})
	if err != nil {
		return fmt.Errorf("internode: %w", err)
	}
	m.cluster = nodes
	for i, t := range nodes.Nodes {
		handler := transport.HandlerFunc(func(_ context.Context, msg *transport.Message) ([]byte, error) {
			deliver(i, msg.Payload)
			return nil, nil
		})
		t.Handle(verbOneway, handler)
		t.Handle(verbUrgent, handler)
		m.nodes = append(m.nodes, t)
		m.ids = append(m.ids, nodes.ID(i))
	}
	return nil
}

func (m *internodeMesh) send(ctx context.Context, from, to int, payload []byte) error {
	return m.sendVerb(ctx, from, to, verbOneway, payload)
}

// sendVerb is send with a verb of the caller's choice (idle's urgent lane).
func (m *internodeMesh) sendVerb(ctx context.Context, from, to int, verb transport.Verb, payload []byte) error {
	err := m.nodes[from].Send(ctx, m.ids[to], verb, payload)
	if errors.Is(err, transport.ErrOverloaded) {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

// Failures implements FailureCounter: messages accepted and then dropped
// by their sender (OnDropped) or by their receiver (DroppedInbound), each
// once (see inboundFailures).
func (m *internodeMesh) Failures() uint64 {
	failed := m.dropped.Load()
	for _, t := range m.nodes {
		failed += inboundFailures(t)
	}
	return failed
}

func (m *internodeMesh) accounts() meshAccounts {
	var a meshAccounts
	for _, t := range m.nodes {
		st := t.Stats()
		a.counted += st.OutboundBytes + st.InboundHeld
		a.held += int64(st.Total().PendingBytes) + st.InboundHeld
	}
	return a
}

func (m *internodeMesh) nodeLimits() (sum int64, rssBound bool) {
	n := int64(len(m.nodes))
	return n * (m.out.Node + m.in.Node), m.out.Node <= rssBoundNodeLimit && m.in.Node <= rssBoundNodeLimit
}

// open counts, over the nodes, the outbound lanes connected now and the
// inbound connections open now.
func (m *internodeMesh) open() (lanes, inbound int) {
	for _, t := range m.nodes {
		st := t.Stats()
		inbound += st.InboundConnections
		for _, c := range st.Conns {
			if c.Connected {
				lanes++
			}
		}
	}
	return lanes, inbound
}

func (m *internodeMesh) close() error {
	if m.cluster != nil {
		m.cluster.Close()
	}
	m.cluster, m.nodes = nil, nil
	return nil
}
