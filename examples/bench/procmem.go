package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"
)

// memPoll is how often the saturate scenario samples memory.
const memPoll = 50 * time.Millisecond

// Names of the runtime/metrics read here.
const (
	// metricHeapObjects is runtime.MemStats.HeapAlloc, read without
	// stopping the world: live objects and dead ones not yet swept.
	metricHeapObjects = "/memory/classes/heap/objects:bytes"
	// metricHeapLive is what the last GC found live.
	metricHeapLive   = "/gc/heap/live:bytes"
	metricHeapStacks = "/memory/classes/heap/stacks:bytes" // goroutine stacks
)

// readMetrics returns the runtime/metrics named, in order (0 for one the
// runtime does not have).
func readMetrics(names ...string) []int64 {
	samples := make([]metrics.Sample, len(names))
	for i, name := range names {
		samples[i].Name = name
	}
	metrics.Read(samples)
	vals := make([]int64, len(names))
	for i, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			vals[i] = int64(s.Value.Uint64())
		}
	}
	return vals
}

// procRSS returns this process's resident set now (VmRSS) and its peak
// (VmHWM), in bytes, from /proc/self/status; false where that file does
// not exist.
func procRSS() (rss, peak int64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	field := func(name string) (int64, bool) {
		i := bytes.Index(b, []byte("\n"+name+":"))
		if i < 0 {
			return 0, false
		}
		rest := b[i+len(name)+2:]
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			rest = rest[:j]
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
		return kb << 10, err == nil
	}
	rss, okRSS := field("VmRSS")
	peak, okPeak := field("VmHWM")
	return rss, peak, okRSS && okPeak
}

// resetPeakRSS makes VmHWM start again from the current resident set
// (writing "5" to /proc/self/clear_refs) and reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// memPeaks are the highest figures a memSampler saw.
type memPeaks struct {
	rss  int64 // bytes resident, 0 where unknown
	heap int64 // heap objects (heapInUse)
	// counted is the highest meshAccounts.counted and held the highest
	// meshAccounts.held. countedSum, heapSum and liveSum add up, over every
	// sample taken after the first GC, the bytes counted, the heap objects
	// and the live heap the last GC found: their ratios say how much of
	// the heap the accounts explain, averaged over the run rather than
	// read at one instant. Zero without accounts.
	counted                      int64
	held                         int64
	countedSum, heapSum, liveSum int64
}

// memSampler samples, from startMemSampler until stop, every memPoll: the
// resident set, the heap in use and the mesh's accounts.
type memSampler struct {
	accounts func() meshAccounts // nil: the system counts nothing
	peaks    memPeaks            // owned by the sampling goroutine until done
	stopCh   chan struct{}
	done     chan struct{}
}

func startMemSampler(accounts func() meshAccounts) *memSampler {
	s := &memSampler{accounts: accounts, stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(memPoll)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *memSampler) sample() {
	if rss, _, ok := procRSS(); ok {
		s.peaks.rss = max(s.peaks.rss, rss)
	}
	heap := readMetrics(metricHeapObjects, metricHeapLive)
	s.peaks.heap = max(s.peaks.heap, heap[0])
	if s.accounts == nil {
		return
	}
	a := s.accounts()
	s.peaks.counted = max(s.peaks.counted, a.counted)
	s.peaks.held = max(s.peaks.held, a.held)
	if heap[1] > 0 { // after the first GC
		s.peaks.countedSum += a.counted
		s.peaks.heapSum += heap[0]
		s.peaks.liveSum += heap[1]
	}
}

// stop ends the sampling (it takes no sample of its own: the last is the
// one before it, at most memPoll old) and returns the peaks. The resident
// set's is the highest of the samples and VmHWM: in a fresh child process whose
// VmHWM was reset before the run (or even if it was not: the process did
// nothing else), VmHWM also catches peaks between samples.
func (s *memSampler) stop() memPeaks {
	close(s.stopCh)
	<-s.done
	if _, peak, ok := procRSS(); ok {
		s.peaks.rss = max(s.peaks.rss, peak)
	}
	return s.peaks
}

// retained is what a process holds once garbage is collected.
type retained struct {
	heap, stacks int64 // heap objects and goroutine stacks, bytes
	goroutines   int
}

// measureRetained collects garbage twice (the second pass frees what
// sync.Pools gave up in the first) and reads the heap objects, goroutine
// stacks and goroutines left.
func measureRetained() retained {
	runtime.GC()
	runtime.GC()
	v := readMetrics(metricHeapObjects, metricHeapStacks)
	return retained{heap: v[0], stacks: v[1], goroutines: runtime.NumGoroutine()}
}
