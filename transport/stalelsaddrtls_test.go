package transport_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAStaleAddressUnderTLSIsNotARefusal: the same stale address as
// TestAStaleAddressDoesNotDeliverToAnotherNode, under mutual TLS. Without
// TLS the dial that reaches ny instead of nx is "not a refusal: the
// membership will catch up": requests fail ErrConnectionReset and the
// one-way message waits for nx. Under TLS the certificate check finds
// the same thing first and calls it ErrRefused, which fails every queued
// one-way message for good: the message sent while the membership lags
// never reaches nx once it is at its own address.
func TestAStaleAddressUnderTLSIsNotARefusal(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	start := func(id cluster.NodeID, members cluster.Membership) *transport.Transport {
		cfg := transport.DefaultConfig()
		cfg.NodeID, cfg.ClusterName, cfg.ListenAddr, cfg.Membership = id, "test", "127.0.0.1:0", members
		cfg.Telemetry.Logger = quietLogger
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = time.Millisecond, 20*time.Millisecond
		cfg.Security.TLS = tlsFor(t, ca, id)
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	var nxGot atomic.Int64
	ny := start("ny", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}))
	static := cluster.NewStatic(
		cluster.Member{ID: "ny", Addr: ny.Addr().String()},
		cluster.Member{ID: "nx", Addr: ny.Addr().String()}, // stale: ny lives there now
	)
	n1 := start("n1", static)

	_, err = n1.Request(ctxTimeout(t, 10*time.Second), "nx", verbData, []byte("q"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, transport.ErrConnectionReset), "a stale address is not a refusal, as without TLS: %v", err)

	require.NoError(t, n1.Send(ctxTimeout(t, 10*time.Second), "nx", verbData, []byte("m")))
	waitFor(t, 10*time.Second, "dials to the stale address fail", func() bool { tot := n1.Stats().Total(); return tot.ConnectFailures >= 2 || tot.DroppedTotal() >= 2 })
	nx := start("nx", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}))
	nx.Handle(verbData, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		nxGot.Add(1)
		return nil, nil
	}))
	static.Add(cluster.Member{ID: "nx", Addr: nx.Addr().String()})
	deadline := time.Now().Add(10 * time.Second)
	for nxGot.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.EqualValues(t, 1, nxGot.Load(), "the one-way message reaches nx once it is at its own address; n1 dropped %v",
		n1.Stats().Total().Dropped)
}
