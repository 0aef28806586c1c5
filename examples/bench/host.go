package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// loadAverage returns the 1-minute load average, or false where
// /proc/loadavg does not exist. Other work on the machine skews every
// figure, so the report shows it.
func loadAverage() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return v, err == nil
}

// hostLine describes the machine for the report's header.
func hostLine() string {
	s := fmt.Sprintf("host: %d CPUs, GOMAXPROCS %d, %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if load, ok := loadAverage(); ok {
		s += fmt.Sprintf(", load average %.1f", load)
		if load > float64(runtime.NumCPU())/2 {
			s += " (busy machine: figures are noisy)"
		}
	}
	return s
}
