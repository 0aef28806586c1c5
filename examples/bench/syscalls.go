package main

import (
	"bytes"
	"os"
	"strconv"
)

// writeSyscalls returns the write(2)-family system calls (write, writev,
// pwrite...) this process has made, all threads together, as the kernel
// counts them in /proc/self/io ("syscw"); false where that file does not
// exist (not Linux, or a kernel without task I/O accounting). sendmsg(2),
// sendfile(2) and splice(2) are not counted; Go writes sockets with write
// and writev. The count includes the Go runtime's eventfd writes that wake
// its network poller.
func writeSyscalls() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("syscw:")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
