package transport

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCRCRangeMatchesWholeChecksum: crcRange over a range, in reads of any
// buffer size and continued across calls, is the CRC32C of that range.
func TestCRCRangeMatchesWholeChecksum(t *testing.T) {
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 31)
	}
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	want := crc32.Checksum(data[123:90_000], castagnoli)
	for _, size := range []int{1, 1000, 4096, checksumBuffer} {
		first, err := crcRange(context.Background(), f, 123, 40_000, 0, make([]byte, size))
		require.NoError(t, err)
		got, err := crcRange(context.Background(), f, 40_123, 90_000-40_123, first, make([]byte, size))
		require.NoError(t, err)
		require.Equal(t, want, got, "buffer of %d", size)
	}
	_, err = crcRange(context.Background(), f, 99_000, 2_000, 0, make([]byte, 4096))
	require.ErrorContains(t, err, "has 1000 of 2000 bytes")
}

// BenchmarkCRCRange checksums a 64 MiB file from the page cache with read
// buffers of several sizes: SendFile's second pass on each side.
func BenchmarkCRCRange(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "f")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	require.NoError(b, os.WriteFile(path, data, 0o600))
	f, err := os.Open(path)
	require.NoError(b, err)
	defer f.Close()
	for _, buf := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("buffer=%dKiB", buf>>10), func(b *testing.B) {
			p := make([]byte, buf)
			b.SetBytes(size)
			for b.Loop() {
				if _, err := crcRange(context.Background(), f, 0, size, 0, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
