package kernelstat_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/kernelstat"
)

func TestParseNetstatSamples(t *testing.T) {
	for _, tc := range []struct {
		file  string
		want  map[string]uint64
		count int // counters in the file
	}{
		{"netstat_linux6.18.txt", map[string]uint64{
			"TcpExt:TCPRcvCollapsed": 0, "TcpExt:PruneCalled": 44, "TcpExt:RcvPruned": 0,
			"TcpExt:OfoPruned": 0, "TcpExt:DelayedACKs": 7049, "IpExt:InOctets": 362847119730,
		}, 135 + 18 + 76},
		{"netstat_pruning.txt", map[string]uint64{
			"TcpExt:TCPRcvCollapsed": 343734, "TcpExt:PruneCalled": 10112, "TcpExt:RcvPruned": 10051,
			"TcpExt:OfoPruned": 61,
		}, 135 + 18 + 76},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := kernelstat.ParseNetstat(openSample(t, tc.file))
			require.NoError(t, err)
			require.Len(t, got, tc.count)
			for k, v := range tc.want {
				require.Contains(t, got, k)
				require.Equal(t, v, got[k], k)
			}
		})
	}
}

func TestParseNetstatToleratesBlankLines(t *testing.T) {
	got, err := kernelstat.ParseNetstat(strings.NewReader("\nTcpExt: A B\n\nTcpExt: 1 2\n\n"))
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{"TcpExt:A": 1, "TcpExt:B": 2}, got)
}

func TestParseNetstatMalformed(t *testing.T) {
	for _, file := range []string{
		"netstat_count_mismatch.txt",
		"netstat_label_mismatch.txt",
		"netstat_bad_value.txt",
		"netstat_truncated.txt",
		"netstat_no_label.txt",
		"netstat_duplicate.txt",
		"softnet_linux6.18.txt", // the wrong file
	} {
		t.Run(file, func(t *testing.T) {
			got, err := kernelstat.ParseNetstat(openSample(t, file))
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
			require.Nil(t, got)
			t.Log(err) // the messages name the line and the problem
		})
	}
	for name, input := range map[string]string{
		"empty":         "",
		"blank":         "\n \n",
		"bare label":    ":\n:\n",
		"too long line": "TcpExt: " + strings.Repeat("A", 2<<20) + "\nTcpExt: 1\n",
		"overflow":      "TcpExt: A\nTcpExt: 18446744073709551616\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := kernelstat.ParseNetstat(strings.NewReader(input))
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
		})
	}
}

func FuzzParseNetstat(f *testing.F) {
	for _, file := range []string{"netstat_linux6.18.txt", "netstat_pruning.txt",
		"netstat_count_mismatch.txt", "netstat_label_mismatch.txt", "netstat_bad_value.txt",
		"netstat_truncated.txt", "netstat_no_label.txt", "netstat_duplicate.txt"} {
		f.Add(readSample(f, file))
	}
	f.Add([]byte("TcpExt: A B\nTcpExt: 1 2\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		got, err := kernelstat.ParseNetstat(bytes.NewReader(input))
		if err != nil {
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
			require.Nil(t, got)
			return
		}
		require.NotEmpty(t, got)
		for key := range got {
			label, name, ok := strings.Cut(key, ":")
			require.True(t, ok && label != "" && name != "", "key %q is Label:Name", key)
		}
	})
}
