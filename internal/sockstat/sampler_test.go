package sockstat_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
)

func TestSamplerMeasuresQuietSocketEveryNth(t *testing.T) {
	s := sockstat.Sampler{Every: 4}
	var measured []int
	for i := range 12 {
		if s.Due(100, false) {
			measured = append(measured, i)
			s.Record(0, 100)
		}
	}
	require.Equal(t, []int{0, 4, 8}, measured, "the first event, then one in Every")
}

func TestSamplerMeasuresOnBytes(t *testing.T) {
	s := sockstat.Sampler{Every: 100, Bytes: 1000}
	require.True(t, s.Due(10, false), "no reading yet")
	s.Record(0, 10)
	require.False(t, s.Due(400, false))
	require.False(t, s.Due(400, false))
	require.True(t, s.Due(400, false), "1200 bytes went unmeasured")
	s.Record(0, 400)
	require.True(t, s.Due(5000, false), "one event past the bound")
}

func TestSamplerFollowsBacklogAndSlowEvents(t *testing.T) {
	s := sockstat.Sampler{Every: 1000, Bytes: 1 << 30}
	require.True(t, s.Due(100, false))
	s.Record(100, 100) // only what was just written: quiet
	require.False(t, s.Due(100, false))
	require.True(t, s.Due(100, true), "a slow write is measured")
	s.Record(300, 100) // more than the write: a backlog
	for range 5 {
		require.True(t, s.Due(100, false), "every event while a backlog shows")
		s.Record(400, 100)
	}
	require.True(t, s.Due(100, false))
	s.Record(0, 100)
	require.False(t, s.Due(100, false), "quiet again")
}
