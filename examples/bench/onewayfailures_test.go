package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// refusingReceiver makes the node named receiver accept messages of at
// most 1 MiB, so that it refuses a larger one its sender accepted: a large
// one-way message failed at both ends, which count it each (transport's
// Reason: "counted under exactly one reason on each side that saw it").
func refusingReceiver(receiver string) func(*transport.Config) {
	return func(c *transport.Config) {
		if string(c.NodeID) == receiver {
			c.Memory.MaxMessageSize = 1 << 20
		}
	}
}

// A one-way message is one outcome however many ends count it: a large
// message the receiver refused is failed once, not twice, or the run's
// lost figure (sent − delivered − failed) goes negative and hides a
// message really lost.
func TestRefusedLargeOnewayFailsOnce(t *testing.T) {
	s := newInternode(refusingReceiver("b"))
	require.NoError(t, s.Start(context.Background(), Hooks{OnMessage: func([]byte) {}}))
	defer s.Close()
	require.NoError(t, s.Send(context.Background(), make([]byte, 2<<20)))
	refusedByBoth := func() bool {
		var inbound uint64
		for _, n := range s.b.Stats().Total().DroppedInbound {
			inbound += n
		}
		return s.onewayDropped.Load() == 1 && inbound == 1
	}
	require.Eventually(t, refusedByBoth, 10*time.Second, time.Millisecond, "the refusal, counted at both ends")
	assert.EqualValues(t, 1, s.Failures(), "one message refused")
}

// The same for the meshes of saturate and idle.
func TestMeshRefusedLargeOnewayFailsOnce(t *testing.T) {
	m := newInternodeMesh(meshLimits{}, refusingReceiver("n2")) // node 1 of two, n1 and n2
	require.NoError(t, m.start(2, func(int, []byte) {}))
	defer m.close()
	require.NoError(t, m.send(context.Background(), 0, 1, make([]byte, 2<<20)))
	refusedByBoth := func() bool {
		var inbound uint64
		for _, n := range m.nodes[1].Stats().Total().DroppedInbound {
			inbound += n
		}
		return m.dropped.Load() == 1 && inbound == 1
	}
	require.Eventually(t, refusedByBoth, 10*time.Second, time.Millisecond, "the refusal, counted at both ends")
	assert.EqualValues(t, 1, m.Failures(), "one message refused")
}
