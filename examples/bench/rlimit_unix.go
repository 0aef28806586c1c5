//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// ensureFileLimit raises this process's limit on open files (its soft
// limit, and the hard one if the process may) to at least need, or says
// why it cannot. The idle scenario's meshes hold many sockets.
func ensureFileLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return nil
	}
	if lim.Max >= need {
		want.Max = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			return nil
		}
	}
	return fmt.Errorf("needs about %d open files; the limit is %d (hard %d): raise it (ulimit -n)", need, lim.Cur, lim.Max)
}
