package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/clocktest"
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

// steppedContext is a context whose deadline reads as one made before the
// wall clock stepped by step: same monotonic reading, wall reading off.
type steppedContext struct {
	context.Context
	step time.Duration
}

func (c steppedContext) Deadline() (time.Time, bool) {
	d, ok := c.Context.Deadline()
	return clocktest.WallStepped(d, c.step), ok
}

// TestExpiryIgnoresWallClockSteps: the send path kept a message's expiry
// as the wall-clock reading of its context's deadline and wrote its TTL as
// that minus the wall clock when written. A deadline made before the wall
// clock stepped back an hour (its wall reading an hour ahead of the
// clock's now) went out with an hour and 2 s to live, though its caller
// waited 2 s: "back" failed with the handler's deadline an hour away. One
// made before a step forward went out expired: "forward" failed with the
// request refused as expired while its caller had 2 s left. Deadlines are
// now kept on the monotonic clock, on both sides: what is left of a
// deadline does not move with the wall clock.
func TestExpiryIgnoresWallClockSteps(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	left := make(chan time.Duration, 1)
	receiver.Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		d, _ := ctx.Deadline()
		left <- time.Until(d)
		return []byte("ok"), nil
	}))
	const ttl = 2 * time.Second
	for _, tc := range []struct {
		name string
		step time.Duration // of the deadline's wall reading against the clock's now
	}{{"back", time.Hour}, {"forward", -time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, send := range []struct {
				name string
				do   func(ctx context.Context) error
			}{
				{"request", func(ctx context.Context) error {
					_, err := sender.Request(ctx, c.ID(1), verbData, []byte("q"))
					return err
				}},
				{"one-way", func(ctx context.Context) error { return sender.Send(ctx, c.ID(1), verbData, []byte("m")) }},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), ttl)
				err := send.do(steppedContext{ctx, tc.step})
				cancel()
				require.NoError(t, err, "%s", send.name)
				select {
				case l := <-left:
					assert.LessOrEqual(t, l, ttl, "%s: the handler's deadline is further than its caller's", send.name)
					assert.Positive(t, l, "%s: the handler's deadline has passed", send.name)
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: not delivered: expired on the way", send.name)
				}
			}
		})
	}
}
