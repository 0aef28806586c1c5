package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"time"
)

var scenarioFile = &Scenario{
	Name: "file",
	Doc: "file transfer: one -file-size (1 GiB) temp file sent again and again, one transfer at a time; " +
		"MB/s and CPU s/GB over the transfers started in the measured interval, each timed from its call to the " +
		"receiver's acknowledgement; msgs/s counts files",
	Systems: []string{"internode", "internode-unchecked", "raw-sendfile", "buffered-copy"},
	Supports: func(sys System) bool {
		_, ok := sys.(FileSender)
		return ok
	},
	PayloadSize: func(o Options) int { return int(o.fileSize()) },
	NoPayload:   true,
	Load:        loadFile,
	// Both against raw sendfile, the floor SendFile builds on: on loopback
	// a buffered copy costs about as much CPU as sendfile does, so a bound
	// against it says nothing about zero copy. internode-unchecked (no
	// CRC32C) is held to the same bounds: the checksum is what separates
	// the two.
	Targets: []Target{
		{Metric: metricMBPerSec, System: "internode", Baseline: "raw-sendfile", Min: 0.95},
		{Metric: metricCPUPerGB, System: "internode", Baseline: "raw-sendfile", Max: 1.15},
		{Metric: metricMBPerSec, System: "internode-unchecked", Baseline: "raw-sendfile", Min: 0.95},
		{Metric: metricCPUPerGB, System: "internode-unchecked", Baseline: "raw-sendfile", Max: 1.15},
	},
	Columns:    []Metric{metricCPUPerGB},
	Chart:      []Metric{metricMBPerSec},
	MoreCharts: [][]Metric{{metricCPUPerGB}},
}

// loadFile sends the source file in a loop and measures each transfer: its
// duration, the process's CPU time (both ends and the harness, one
// transfer at a time) and write syscalls. The figures cover the transfers
// started in the measured interval, all of which end before the drain
// does: with 1 GiB files a window holds a few transfers, too few to count
// bytes delivered per second of window.
func loadFile(r *Run, _ []byte) {
	size := r.Opts.fileSize()
	f, err := sourceFile(size)
	if err != nil {
		r.Abort(err)
		return
	}
	var mu sync.Mutex // guards the sums
	var files, syscalls uint64
	var bytes int64
	var elapsed, cpu time.Duration
	r.Go(func() {
		for !r.Stopping() {
			start, cpu0 := time.Now(), processCPU()
			sys0, _ := writeSyscalls()
			ok := r.SendFile(f, size)
			d, c := time.Since(start), processCPU()-cpu0
			sys1, _ := writeSyscalls()
			if ok && r.InWindow(start) {
				mu.Lock()
				files++
				bytes += size
				elapsed += d
				cpu += c
				syscalls += sys1 - sys0
				mu.Unlock()
			}
		}
	})
	r.OnResult(func(res *Result) {
		mu.Lock()
		defer mu.Unlock()
		if files == 0 {
			return // no transfer started in the window: the window figures stand
		}
		res.MsgsPerSec = float64(files) / elapsed.Seconds()
		res.MBPerSec = float64(bytes) / elapsed.Seconds() / 1e6
		res.CPUusPerMsg = float64(cpu.Microseconds()) / float64(files)
		perGB := cpu.Seconds() / (float64(bytes) / 1e9)
		res.CPUsPerGB = &perGB
		res.VectoredWritesPerMsg = nil // internode's lane counters see no file transfer
		if _, ok := writeSyscalls(); ok {
			w := float64(syscalls) / float64(files)
			res.WritesPerMsg = &w
		}
	})
}

// Source files are made once per size and process and kept open, their
// names already removed (see createUnlinkedTemp); closeSourceFiles closes
// them.
var (
	sourceMu    sync.Mutex
	sourceFiles = map[int64]*os.File{}
)

// sourceFile returns an open file of size bytes, random, in the page cache
// and written back.
func sourceFile(size int64) (*os.File, error) {
	sourceMu.Lock()
	defer sourceMu.Unlock()
	if f, ok := sourceFiles[size]; ok {
		return f, nil
	}
	f, err := createUnlinkedTemp("bench-file-src-")
	if err != nil {
		return nil, err
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	for written := int64(0); written < size; {
		n := int(min(int64(len(block)), size-written))
		if _, err := f.Write(block[:n]); err != nil {
			f.Close()
			return nil, fmt.Errorf("file scenario: writing %d bytes to a temp file in %s: %w", size, os.TempDir(), err)
		}
		written += int64(n)
		block[0]++ // no two blocks alike
	}
	// Written back before any transfer reads it: otherwise the first
	// system measured (internode, in the first repeat) shares the disk
	// and a core with the kernel's writeback of the whole file.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("file scenario: syncing the temp file in %s: %w", os.TempDir(), err)
	}
	sourceFiles[size] = f
	return f, nil
}

func closeSourceFiles() {
	sourceMu.Lock()
	defer sourceMu.Unlock()
	for size, f := range sourceFiles {
		f.Close()
		delete(sourceFiles, size)
	}
}
