package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestExpirySurvivesClockSkew: a sender whose clock is an hour ahead or
// behind the receiver's gets the expiry it asked for. Its CreatedAt is
// off by the hour — it is the sender's clock — but the deadline travels
// as the time left, so the receiver's deadline is its own clock at
// arrival plus that: not an hour late, and not expired on arrival.
func TestExpirySurvivesClockSkew(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	type seen struct{ created, deadline time.Time }
	got := make(chan seen, 1)
	receiver.Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		d, _ := ctx.Deadline()
		got <- seen{m.CreatedAt, d}
		return []byte("ok"), nil
	}))
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		transport.SetClockSkew(sender, skew)
		for _, ttl := range []time.Duration{200 * time.Millisecond, 5 * time.Second} {
			before := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), ttl)
			_, err := sender.Request(ctx, c.ID(1), verbData, []byte("q"))
			cancel()
			require.NoError(t, err, "skew %v, ttl %v: not expired on arrival", skew, ttl)
			s := <-got
			assert.WithinDuration(t, before.Add(skew), s.created, time.Second, "the sender's clock is off")
			assert.WithinRange(t, s.deadline, before.Add(ttl), time.Now().Add(ttl),
				"skew %v: the receiver's deadline is the time left, from arrival", skew)
		}
	}
}
