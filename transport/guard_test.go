package transport

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// countLevel counts records at warning level and above.
type countLevel struct{ n *atomic.Int64 }

func (h countLevel) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countLevel) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countLevel) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countLevel) WithGroup(string) slog.Handler      { return h }

// TestRateLogLimitsEachKey: a flood of one kind of warning logs its burst
// per interval and then one line saying how many were left out; another
// kind has a burst of its own.
func TestRateLogLimitsEachKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		r := rateLog{log: slog.New(countLevel{&n}), every: time.Second, burst: 5}
		refused := logKey{refusal: RefusedMalformed + 1}
		for range 10_000 {
			r.warn(refused, "refused")
		}
		assert.Equal(t, int64(5), n.Load(), "the burst, then nothing")
		r.warn(logKey{badInput: BadInputChecksum + 1}, "bad")
		assert.Equal(t, int64(6), n.Load(), "another key has its own burst")
		time.Sleep(time.Second)
		r.warn(refused, "refused")
		assert.Equal(t, int64(8), n.Load(), "next interval: how many were left out, and the warning")
	})
}

func TestBadInputOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want BadInput
	}{
		{context.DeadlineExceeded, BadInputSilent},
		{assert.AnError, BadInputMalformed},
	} {
		assert.Equal(t, tt.want, badInputOf(tt.err), "%v", tt.err)
	}
}

// TestForgetStrangersSparesOneThatJoined: a peer entry made while the node
// was not a member (a cancel sent after it left, or its connection with
// AcceptUnknownPeers) stayed a stranger's after the node joined. Quiet —
// a Send to it waiting for outbound capacity holds nothing yet — it was
// forgotten under that Send, which failed with ErrUnknownPeer to a
// member, its drop counted where Stats no longer looked.
func TestForgetStrangersSparesOneThatJoined(t *testing.T) {
	members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	tr := coreTransport(t, func(c *Config) {
		c.Membership = members
		c.Memory.MaxMessageSize = 64 << 10
		c.Memory.Outbound = Limits{PerConnection: 128 << 10, PerPeer: 160 << 10, Node: 160 << 10} // 140 KiB for sends
		c.Memory.WaitForCapacity = true
	})
	// Two one-way messages to n2, which cannot be dialled, hold most of
	// the node's outbound capacity while they wait for it.
	for range 2 {
		require.NoError(t, tr.Send(context.Background(), "n2", 1, make([]byte, 60<<10)))
	}
	_, err := tr.peerFor("n3", false) // made while n3 is not a member
	require.NoError(t, err)
	tr.peersMu.RLock()
	assert.Equal(t, 1, tr.strangerEntries, "n3's entry, a stranger's")
	tr.peersMu.RUnlock()
	members.Add(cluster.Member{ID: "n3", Addr: "127.0.0.1:1"})
	sent := make(chan error, 1)
	go func() { sent <- tr.Send(context.Background(), "n3", 1, make([]byte, 60<<10)) }()
	require.Eventually(t, func() bool { return tr.outBudget.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	tr.forgetQuietStrangers() // what the janitor does every strangerSweep
	assert.NotNil(t, tr.peerStats("n3"), "a member's entry is kept")
	tr.peersMu.RLock()
	assert.Zero(t, tr.strangerEntries, "n3's entry, a member's now")
	tr.peersMu.RUnlock()
	// Close may free the capacity the Send waits for before it stops n3's
	// lane: the Send then succeeds, or fails as closed.
	tr.Close()
	assert.NotErrorIs(t, <-sent, ErrUnknownPeer, "the Send to a member does not fail as to an unknown peer")
}
