//go:build !unix

package transport

import "os"

func fileChecksum(f *os.File, offset, length int64) (uint32, error) {
	return readChecksum(f, offset, length)
}
