package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAMessageThatExpiresDuringTheReconnectBackoffFailsAtItsDeadline: a
// one-way message with a deadline is queued to a peer that cannot be
// dialled; the dial fails and the lane waits out its reconnect backoff
// (seconds, at MaxBackoff), during which the message's deadline passes.
// Nothing looked at the queue until the next dial had failed too: the
// message held its capacity past its deadline, and a Shutdown begun
// meanwhile waited for it, then gave up with the context's error and
// failed it as closed, not expired.
func TestAMessageThatExpiresDuringTheReconnectBackoffFailsAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := unreachableN2(t, backsOff)

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		require.NoError(t, tr.Send(ctx, "n2", verbData, []byte("x")))
		synctest.Wait() // the dial failed; the lane sleeps its backoff

		shutdownAfterItExpires(t, tr)
	})
}

// TestAMessageQueuedDuringTheReconnectBackoffFailsAtItsDeadline: as above,
// for a message queued while the lane already waits out its backoff, with
// a deadline sooner than any queued before it.
func TestAMessageQueuedDuringTheReconnectBackoffFailsAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := unreachableN2(t, backsOff)

		first, cancelFirst := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelFirst()
		require.NoError(t, tr.Send(first, "n2", verbData, []byte("x")))
		synctest.Wait() // the dial failed; the lane sleeps its backoff

		second, cancelSecond := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancelSecond()
		require.NoError(t, tr.Send(second, "n2", verbData, []byte("y")))
		time.Sleep(200 * time.Millisecond) // the bubble's clock: past the second's deadline
		synctest.Wait()
		total := tr.Stats().Total()
		require.Equal(t, uint64(1), total.Dropped[transport.ReasonExpired],
			"the second message expired at its deadline: %+v", total.Dropped)

		time.Sleep(5 * time.Second) // past the first's
		synctest.Wait()
		total = tr.Stats().Total()
		require.Equal(t, uint64(2), total.Dropped[transport.ReasonExpired],
			"both expired at their deadlines: %+v", total.Dropped)
	})
}

// TestAMessageThatExpiresDuringAHungDialFailsAtItsDeadline: as above, for
// a peer whose dials hang (a partition that drops the SYN): each attempt
// lasts Timeouts.Dial.
func TestAMessageThatExpiresDuringAHungDialFailsAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := unreachableN2(t, func(cfg *transport.Config) {
			cfg.Dialer = dialerFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
				<-ctx.Done() // the SYN is lost: the dial ends at Timeouts.Dial
				return nil, ctx.Err()
			})
			cfg.Timeouts.Dial = 10 * time.Second
		})

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		require.NoError(t, tr.Send(ctx, "n2", verbData, []byte("x")))
		synctest.Wait() // the lane dials

		shutdownAfterItExpires(t, tr)
	})
}

// unreachableN2 starts n1, in a synctest bubble, with a member n2 that
// tweak's Dialer cannot reach; it is closed when the test ends.
func unreachableN2(t *testing.T, tweak func(cfg *transport.Config)) *transport.Transport {
	t.Helper()
	members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "n2:1"})
	cfg := transporttest.Config("n1", "test", members)
	network := transporttest.NewNetwork()
	t.Cleanup(network.Close)
	network.Host("n1").Configure(&cfg)
	cfg.Telemetry.DisableSocketMeasurement = true
	tweak(&cfg)
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	tr.Start()
	t.Cleanup(func() { tr.Close() })
	return tr
}

// backsOff makes every dial fail at once and the lane back off 10 s.
func backsOff(cfg *transport.Config) {
	cfg.Dialer = dialerFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, errors.New("unreachable")
	})
	cfg.Reconnect.MinBackoff = 10 * time.Second
	cfg.Reconnect.MaxBackoff = 10 * time.Second
}

// shutdownAfterItExpires shuts tr down with 3 s to drain its one queued
// message, whose deadline is 100 ms away: Shutdown returns once it
// expires, and its one outcome is its expiry.
func shutdownAfterItExpires(t *testing.T, tr *transport.Transport) {
	t.Helper()
	start := time.Now()
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer shutCancel()
	err := tr.Shutdown(shutCtx)
	took := time.Since(start)
	total := tr.Stats().Total()
	require.NoError(t, err, "Shutdown with nothing left to drain once the message expired (took %v)", took)
	require.Less(t, took, time.Second, "Shutdown waited past the message's deadline")
	require.Equal(t, uint64(1), total.Dropped[transport.ReasonExpired],
		"the message's one outcome is its expiry: %+v", total.Dropped)
}
