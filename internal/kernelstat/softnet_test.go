package kernelstat_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/kernelstat"
)

func TestParseSoftnetSamples(t *testing.T) {
	for _, tc := range []struct {
		file                         string
		processed, dropped, squeezed uint64
	}{
		{"softnet_linux6.18.txt", 31207089, 0, 0}, // captured on this project's 2-CPU build machine
		{"softnet_4cpu_squeezed.txt", 0x6dcad223 + 0x6f0e1565 + 0x660774ec + 0x61c99331, 0xa, 1 + 2 + 3 + 0x2d},
	} {
		t.Run(tc.file, func(t *testing.T) {
			processed, dropped, squeezed, err := kernelstat.ParseSoftnet(openSample(t, tc.file))
			require.NoError(t, err)
			require.Equal(t, tc.processed, processed)
			require.Equal(t, tc.dropped, dropped)
			require.Equal(t, tc.squeezed, squeezed)
		})
	}
}

func TestParseSoftnetMalformed(t *testing.T) {
	for _, file := range []string{
		"softnet_short_line.txt",
		"softnet_not_hex.txt",
		"netstat_linux6.18.txt", // the wrong file
	} {
		t.Run(file, func(t *testing.T) {
			_, _, _, err := kernelstat.ParseSoftnet(openSample(t, file))
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
			t.Log(err)
		})
	}
	for name, input := range map[string]string{
		"empty":              "",
		"blank":              "\n\n",
		"wider than 32 bits": "100000000 0 0\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := kernelstat.ParseSoftnet(strings.NewReader(input))
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
		})
	}
}

func FuzzParseSoftnet(f *testing.F) {
	for _, file := range []string{"softnet_linux6.18.txt", "softnet_4cpu_squeezed.txt",
		"softnet_short_line.txt", "softnet_not_hex.txt"} {
		f.Add(readSample(f, file))
	}
	f.Add([]byte("ffffffff ffffffff ffffffff\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		processed, dropped, squeezed, err := kernelstat.ParseSoftnet(bytes.NewReader(input))
		if err != nil {
			require.ErrorIs(t, err, kernelstat.ErrMalformed)
			require.Zero(t, processed+dropped+squeezed, "no partial sums with an error")
		}
	})
}
