package replication_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/transport"
)

var three = []cluster.NodeID{"n1", "n2", "n3"}

// gates lets a test decide when, and how, each replica's call returns.
type gates map[cluster.NodeID]chan error

func newGates(ids ...cluster.NodeID) gates {
	g := gates{}
	for _, id := range ids {
		g[id] = make(chan error, 1)
	}
	return g
}

func (g gates) call(replica cluster.NodeID) error { return <-g[replica] }

func TestQuorumReturnsAtTwoOfThree(t *testing.T) {
	g := newGates(three...)
	var straggler sync.WaitGroup
	straggler.Add(1)
	done := make(chan error, 1)
	go func() {
		done <- replication.Quorum(t.Context(), three, 2, func(r cluster.NodeID) error {
			if r == "n3" {
				defer straggler.Done()
			}
			return g.call(r)
		})
	}()
	g["n1"] <- nil
	g["n2"] <- nil
	require.NoError(t, <-done, "returns while n3 has not answered")
	g["n3"] <- errors.New("late") // the straggler still finishes
	straggler.Wait()
}

func TestQuorumFailsOnceImpossible(t *testing.T) {
	g := newGates(three...)
	done := make(chan error, 1)
	go func() { done <- replication.Quorum(t.Context(), three, 2, g.call) }()
	g["n1"] <- nil
	g["n2"] <- transport.ErrOverloaded
	g["n3"] <- context.DeadlineExceeded
	err := <-done
	var qe *replication.QuorumError
	require.ErrorAs(t, err, &qe)
	require.LessOrEqual(t, qe.Acked, 1, "n1's ack may arrive before or after the failures")
	require.Equal(t, 2, qe.Need)
	require.Len(t, qe.Failures, 2)
	require.ErrorIs(t, err, transport.ErrOverloaded)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestQuorumFailsEarly(t *testing.T) {
	// Two failures out of three rule out 2 acks: no need to wait for n3.
	g := newGates(three...)
	done := make(chan error, 1)
	go func() { done <- replication.Quorum(t.Context(), three, 2, g.call) }()
	g["n1"] <- transport.ErrPeerLeft
	g["n2"] <- transport.ErrPeerLeft
	require.ErrorIs(t, <-done, transport.ErrPeerLeft)
	g["n3"] <- nil
}

func TestQuorumContextEnds(t *testing.T) {
	g := newGates(three...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- replication.Quorum(ctx, three, 2, g.call) }()
	g["n1"] <- nil
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	var qe *replication.QuorumError
	require.ErrorAs(t, err, &qe)
	require.LessOrEqual(t, qe.Acked, 1, "n1's ack may or may not have been seen first")
	g["n2"] <- nil
	g["n3"] <- nil
}

func TestQuorumUnavailable(t *testing.T) {
	err := replication.Quorum(t.Context(), three[:1], 2, func(cluster.NodeID) error { panic("not called") })
	require.ErrorIs(t, err, replication.ErrUnavailable)
}
