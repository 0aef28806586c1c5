package kernelstat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadCountersFromSamples(t *testing.T) {
	open := func(name string) *os.File {
		f, err := os.Open(filepath.Join("testdata", name))
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		return f
	}
	got, err := readCounters(open("netstat_pruning.txt"), open("softnet_4cpu_squeezed.txt"))
	require.NoError(t, err)
	require.Equal(t, Counters{
		RcvCollapsed: 343734, PruneCalled: 10112, RcvPruned: 10051, OfoPruned: 61,
		SoftnetProcessed:   0x6dcad223 + 0x6f0e1565 + 0x660774ec + 0x61c99331,
		SoftnetDropped:     0xa,
		SoftnetTimeSqueeze: 1 + 2 + 3 + 0x2d,
	}, got)
}

func TestReadCountersMissingCounter(t *testing.T) {
	netstat := "TcpExt: PruneCalled RcvPruned OfoPruned\nTcpExt: 1 2 3\n"
	_, err := readCounters(strings.NewReader(netstat), strings.NewReader("1 2 3\n"))
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "TcpExt:TCPRcvCollapsed")
}
