package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestADialTimeoutIsNotAnExpiry: n1's dial to n2 hangs, as a dial does
// when a partition drops the SYN, until Timeouts.Dial passes, and fails
// with the error net returns then ("dial tcp …: i/o timeout", which
// errors.Is matches against context.DeadlineExceeded). A request queued
// meanwhile fails at once with ErrConnectionReset wrapping that error,
// long before its own deadline, and the transport counts it under
// ReasonConnectionReset. ReasonOf, which says which Reason the transport
// counts for an error, called it ReasonExpired: a caller that sorts its
// failures with it (the simulator's ledger does) saw an expiry the
// transport never counted, and a caller deciding whether to try another
// replica was told its deadline had passed.
func TestADialTimeoutIsNotAnExpiry(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i != 0 {
			return
		}
		var d net.Dialer
		cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
			<-ctx.Done()                                // the SYN is lost: the dial ends at Timeouts.Dial
			return d.DialContext(ctx, network, address) // with the error net gives a dial out of time
		})
		cfg.Timeouts.Dial = 50 * time.Millisecond
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })

	_, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), c.ID(1), verbEcho, []byte("req"))
	require.Error(t, err)
	require.ErrorIs(t, err, transport.ErrConnectionReset)
	dropped := c.Nodes[0].Stats().Total().Dropped
	require.Equal(t, uint64(1), dropped[transport.ReasonConnectionReset], "the request's one outcome: %v", dropped)
	require.Zero(t, dropped[transport.ReasonExpired], "%v", dropped)

	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "the dial's timeout is in the chain: %v", err)
	reason, ok := transport.ReasonOf(err)
	assert.True(t, ok)
	assert.Equal(t, transport.ReasonConnectionReset, reason, "ReasonOf(%v) is not what the transport counted", err)
}
