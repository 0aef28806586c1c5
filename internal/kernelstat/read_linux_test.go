package kernelstat_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/kernelstat"
)

// TestReadLive reads this machine's files: the counters exist, and the
// monotonic ones do not go down between two reads.
func TestReadLive(t *testing.T) {
	first, err := kernelstat.Read()
	require.NoError(t, err)
	require.Positive(t, first.SoftnetProcessed, "every machine has processed some packets")
	second, err := kernelstat.Read()
	require.NoError(t, err)
	require.GreaterOrEqual(t, second.RcvCollapsed, first.RcvCollapsed)
	require.GreaterOrEqual(t, second.PruneCalled, first.PruneCalled)
	require.GreaterOrEqual(t, second.RcvPruned, first.RcvPruned)
	require.GreaterOrEqual(t, second.OfoPruned, first.OfoPruned)
	t.Logf("%+v", second)
}

func BenchmarkRead(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kernelstat.Read(); err != nil {
			b.Fatal(err)
		}
	}
}
