package replication_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/examples/replication"
)

// A coordinator's later write of a key replaces its earlier one on every
// replica, whatever its clock does between them: a clock that reads the
// same twice (a coarse clock, two writes within its tick) or steps back
// (NTP) stamped the later write no newer than the earlier, so the earlier
// (or, at the same timestamp, the larger value) won: both writes were
// acknowledged, and the key kept the first.
func TestALaterWriteOfTheSameCoordinatorWins(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clocks := map[string][]time.Time{
		"standing still": {start, start},
		"stepped back":   {start, start.Add(-time.Second)},
	}
	for name, readings := range clocks {
		t.Run(name, func(t *testing.T) {
			c := newTestCluster(t, 3, 5*time.Second)
			coord, err := replication.New(replication.Config{
				Self: "n1", Requester: c.transports["n1"], Local: c.stores["n1"], Timeout: 5 * time.Second,
				Now: func() time.Time {
					now := readings[0]
					if len(readings) > 1 {
						readings = readings[1:]
					}
					return now
				},
			})
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, coord.Write(ctx, c.ids, "k", []byte("z: first")))
			require.NoError(t, coord.Write(ctx, c.ids, "k", []byte("a: second")))
			require.NoError(t, coord.Drain(ctx))
			for _, id := range c.ids {
				value, _, ok := c.stores[id].Get("k")
				require.True(t, ok, "%s holds no value", id)
				assert.Equal(t, "a: second", string(value), "%s's value", id)
			}
		})
	}
}
