package kernelstat

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadLive reads this machine's files: the counters exist, and the
// monotonic ones do not go down between two reads.
func TestReadLive(t *testing.T) {
	first, err := Read()
	require.NoError(t, err)
	require.Positive(t, first.SoftnetProcessed, "every machine has processed some packets")
	second, err := Read()
	require.NoError(t, err)
	require.GreaterOrEqual(t, second.RcvCollapsed, first.RcvCollapsed)
	require.GreaterOrEqual(t, second.PruneCalled, first.PruneCalled)
	require.GreaterOrEqual(t, second.RcvPruned, first.RcvPruned)
	require.GreaterOrEqual(t, second.OfoPruned, first.OfoPruned)
	t.Logf("%+v", second)
}

// The samples in testdata are proc file systems: net/softnet_stat and
// process 1's net/netstat.
func TestReadSamples(t *testing.T) {
	got, err := readFrom(filepath.Join("testdata", "pruning"), 1)
	require.NoError(t, err)
	require.Equal(t, Counters{
		RcvCollapsed: 343734, PruneCalled: 10112, RcvPruned: 10051, OfoPruned: 61,
		SoftnetProcessed:   0x6dcad223 + 0x6f0e1565 + 0x660774ec + 0x61c99331,
		SoftnetDropped:     0xa,
		SoftnetTimeSqueeze: 1 + 2 + 3 + 0x2d,
	}, got)
	got, err = readFrom(filepath.Join("testdata", "linux6.18"), 1)
	require.NoError(t, err)
	require.Equal(t, uint64(44), got.PruneCalled)
	require.Positive(t, got.SoftnetProcessed)
}

func TestReadMalformed(t *testing.T) {
	for _, tc := range []struct {
		sample    string
		malformed bool   // the error wraps ErrMalformed
		names     string // the error names
	}{
		{"no_collapsed", true, "TcpExt:TCPRcvCollapsed"},
		{"softnet_empty", true, "softnet_stat"},
		{"truncated", false, "net/netstat"},
		{"softnet_short", false, "net/softnet_stat"},
		{"softnet_not_hex", false, "net/softnet_stat"},
		{"missing", false, "missing"},
	} {
		t.Run(tc.sample, func(t *testing.T) {
			got, err := readFrom(filepath.Join("testdata", tc.sample), 1)
			require.Error(t, err)
			require.Zero(t, got)
			require.Equal(t, tc.malformed, errors.Is(err, ErrMalformed), "%v", err)
			require.ErrorContains(t, err, tc.names)
			t.Log(err)
		})
	}
}

func BenchmarkRead(b *testing.B) {
	b.Run("files-only", func(b *testing.B) {
		// The floor: reading the two files without parsing them.
		b.ReportAllocs()
		for b.Loop() {
			for _, name := range []string{"/proc/self/net/netstat", "/proc/net/softnet_stat"} {
				if _, err := os.ReadFile(name); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Read(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
