//go:build unix

package transport

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"syscall"
)

// mapChunk is how much of a file fileChecksum maps at a time.
const mapChunk = 64 << 20

// fileChecksum returns the CRC32C of length bytes of f from offset. It maps
// the range (read-only, shared) and checksums the page cache in place, so
// the bytes are not copied; where mapping fails (a file open write-only,
// say) it falls back to reading. A range past the end of the file is an
// error; a file truncated while it is read is caught (the fault that
// touching a page past its end raises becomes an error, not a crash).
func fileChecksum(f *os.File, offset, length int64) (crc uint32, err error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if offset+length > info.Size() {
		return 0, fmt.Errorf("transport: range [%d, %d) past the end of %s (%d bytes): %w",
			offset, offset+length, f.Name(), info.Size(), io.ErrUnexpectedEOF)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("transport: %s changed while checksummed: %v", f.Name(), r)
		}
	}()
	page := int64(os.Getpagesize())
	for done := int64(0); done < length; {
		at := offset + done
		aligned := at - at%page
		n := min(int64(mapChunk), length-done)
		m, err := syscall.Mmap(int(f.Fd()), aligned, int(at-aligned+n), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return readChecksum(f, offset, length)
		}
		crc = crc32.Update(crc, castagnoli, m[at-aligned:])
		if err := syscall.Munmap(m); err != nil {
			return 0, err
		}
		done += n
	}
	return crc, nil
}
