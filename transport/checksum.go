package transport

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// readChecksum is fileChecksum by reading, where mapping is not possible.
func readChecksum(f *os.File, offset, length int64) (uint32, error) {
	buf := make([]byte, 1<<20)
	var crc uint32
	var total int64
	r := io.NewSectionReader(f, offset, length)
	for {
		n, err := r.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:n])
		total += int64(n)
		if err == io.EOF {
			if total != length {
				return 0, fmt.Errorf("transport: checksum: file has %d of %d bytes: %w", total, length, io.ErrUnexpectedEOF)
			}
			return crc, nil
		}
		if err != nil {
			return 0, fmt.Errorf("transport: checksum: %w", err)
		}
	}
}
