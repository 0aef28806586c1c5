package main

import (
	"slices"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of one (scenario, system): one run, or the median
// of several (see median). It is also the JSON line the tool prints.
type Result struct {
	Scenario     string   `json:"scenario"`
	System       string   `json:"system"`
	PayloadBytes int      `json:"payload_bytes"`
	MsgsPerSec   float64  `json:"msgs_per_sec"`
	MBPerSec     float64  `json:"mb_per_sec"` // payload bytes delivered, 10^6 bytes per MB
	P50us        *float64 `json:"p50_us"`     // null when the scenario measures no latency
	P99us        *float64 `json:"p99_us"`
	P999us       *float64 `json:"p999_us"`
	// Service time: from the Request (or Send) call to its response (or
	// the receiving handler). It differs from the above only in open-loop
	// scenarios, where the above also counts how late the scheduler was.
	ServiceP50us  *float64 `json:"service_p50_us"`
	ServiceP99us  *float64 `json:"service_p99_us"`
	ServiceP999us *float64 `json:"service_p999_us"`
	// Latency of a scenario's idle phase (hol: the small messages alone,
	// before the large ones start); null for scenarios without one.
	P50IdleUs *float64 `json:"p50_idle_us"`
	P99IdleUs *float64 `json:"p99_idle_us"`
	// The idle phase's service p99: with ServiceP99us, the requests' own
	// time under the load against alone, which the pacer's lateness
	// (StartP99us) does not enter.
	ServiceP99IdleUs *float64 `json:"service_p99_idle_us"`
	// Start delay: from an operation's intended start to its call, which
	// the above latency includes — how late an open-loop scenario's pacer
	// (a timer) fired; null for scenarios without latency.
	StartP50us     *float64 `json:"start_p50_us"`
	StartP99us     *float64 `json:"start_p99_us"`
	StartP99IdleUs *float64 `json:"start_p99_idle_us"`
	CPUusPerMsg    float64  `json:"cpu_us_per_msg"` // process user+sys CPU over the window / messages
	// WritesPerMsg is write system calls per message: the kernel's count
	// of write(2)/writev(2) calls made by the whole process over the
	// window (/proc/self/io syscw), so both ends' socket writes, for every
	// system alike, plus the rare eventfd write with which the Go runtime
	// wakes its network poller. Null where /proc/self/io is missing.
	WritesPerMsg *float64 `json:"writes_per_msg"`
	// VectoredWritesPerMsg is the system's own count of write calls per
	// message (internode: ConnStats.Writes, one per net.Buffers.WriteTo,
	// each of which may be several system calls: see doc.go); null for
	// systems without a WriteCounter.
	VectoredWritesPerMsg *float64 `json:"vectored_writes_per_msg"`
	// CPUsPerGB is CPU seconds per 10^9 payload bytes (file transfers).
	CPUsPerGB *float64 `json:"cpu_s_per_gb"`
	// Overload scenario: the receiver's inbound capacity held at its peak
	// (Stats.InboundHeld, polled every millisecond), the bound it must stay
	// under, the process's peak heap (HeapAlloc), and the sends refused with
	// ErrOverloaded (saturate: the peak heap and the refusals too). Peaks
	// are the highest over repeats, the bound the lowest; null elsewhere.
	PeakInboundBytes  *float64 `json:"peak_inbound_bytes"`
	InboundLimitBytes *float64 `json:"inbound_limit_bytes"`
	PeakHeapBytes     *float64 `json:"peak_heap_bytes"`
	Overloaded        *uint64  `json:"overloaded"`
	// Nodes in the mesh of saturate and idle; null elsewhere.
	Nodes *int `json:"nodes"`
	// Saturate, sampled every 50 ms in a child process that runs this
	// system alone: its peak resident set (VmRSS samples and VmHWM); the
	// bound the issue sets for it, nodes × 64 MiB + 64 MiB, given for
	// internode only when its Node limits are at most 32 MiB both ways; the
	// sum over nodes of Outbound.Node + Inbound.Node; the peak of the bytes
	// the nodes count (Stats.OutboundBytes + Stats.InboundHeld, summed over
	// nodes) and its ratio to the heap in use read in the same sample (heap
	// objects: live and not yet swept) and to the live heap of the last GC
	// before it (/gc/heap/live:bytes: garbage aside; null before any GC); the
	// peak of every byte Stats shows held (ConnStats.PendingBytes, which
	// includes connections' own capacity, + InboundHeld). Peaks are the
	// highest over repeats, the ratio the median; the internode figures are
	// null for systems that count nothing.
	PeakRSSBytes     *float64 `json:"peak_rss_bytes"`
	RSSBoundBytes    *float64 `json:"rss_bound_bytes"`
	NodeLimitsBytes  *float64 `json:"node_limits_bytes"`
	PeakCountedBytes *float64 `json:"peak_counted_bytes"`
	CountedHeapRatio *float64 `json:"counted_heap_ratio"`
	CountedLiveRatio *float64 `json:"counted_live_ratio"`
	PeakHeldBytes    *float64 `json:"peak_held_bytes"`
	// Idle: ordered pairs of nodes, and per pair the bytes retained (heap
	// objects plus goroutine stacks after two GCs, minus those of the same
	// nodes before any traffic), of which goroutine stacks, and the
	// goroutines: with every lane open ("open"), then once idle close has
	// closed them all ("closed"). Medians over repeats; null elsewhere.
	Pairs                   *int     `json:"pairs"`
	OpenBytesPerPair        *float64 `json:"open_bytes_per_pair"`
	OpenStackBytesPerPair   *float64 `json:"open_stack_bytes_per_pair"`
	OpenGoroutinesPerPair   *float64 `json:"open_goroutines_per_pair"`
	ClosedBytesPerPair      *float64 `json:"closed_bytes_per_pair"`
	ClosedStackBytesPerPair *float64 `json:"closed_stack_bytes_per_pair"`
	ClosedGoroutinesPerPair *float64 `json:"closed_goroutines_per_pair"`
	// CompressionRatio (compress) is the bytes on the wire of the
	// sender's batch frames that went compressed, per byte they held
	// (frames sent as they were do not count; 1 when none was
	// compressed); null elsewhere.
	CompressionRatio *float64 `json:"compression_ratio"`
	// Lost is sent − delivered − failed after the drain, summed over
	// repeats. Negative would mean duplicates.
	Lost       int64    `json:"lost"`
	Sent       uint64   `json:"sent"`
	Delivered  uint64   `json:"delivered"`
	Failed     uint64   `json:"failed"`
	Rejected   uint64   `json:"rejected"`    // ErrBusy answers, retried; not sent
	SendErrors uint64   `json:"send_errors"` // other refusals; not sent
	Samples    int64    `json:"latency_samples"`
	Seconds    float64  `json:"seconds"` // measured interval of one run
	Repeats    int      `json:"repeats"`
	LoadAvg    *float64 `json:"load_avg_1m"` // machine load at the end of the run(s); null if unknown
	Drained    bool     `json:"drained"`     // every sent message reached an outcome before the drain timeout (all repeats)
	Error      string   `json:"error,omitempty"`
}

func (r *Run) result(sc *Scenario, system string, begin, end snapshot) Result {
	res := Result{
		Scenario:     sc.Name,
		System:       system,
		PayloadBytes: sc.PayloadSize(r.Opts),
		Repeats:      1,
	}
	elapsed := end.at.Sub(begin.at).Seconds()
	msgs := float64(end.delivered - begin.delivered)
	res.Seconds = elapsed
	if elapsed > 0 {
		res.MsgsPerSec = msgs / elapsed
		res.MBPerSec = float64(end.bytes-begin.bytes) / elapsed / 1e6
	}
	if msgs > 0 {
		res.CPUusPerMsg = float64((end.cpu - begin.cpu).Microseconds()) / msgs
		if _, ok := r.Sys.(WriteCounter); ok {
			w := float64(end.writes-begin.writes) / msgs
			res.VectoredWritesPerMsg = &w
		}
		if begin.hasSyscw && end.hasSyscw {
			w := float64(end.syscw-begin.syscw) / msgs
			res.WritesPerMsg = &w
		}
	}
	if latency, service, start := r.latencies(&r.measure); latency.TotalCount() > 0 {
		res.Samples = latency.TotalCount()
		res.P50us, res.P99us, res.P999us = quantiles(latency)
		res.ServiceP50us, res.ServiceP99us, res.ServiceP999us = quantiles(service)
		res.StartP50us, res.StartP99us, _ = quantiles(start)
	}
	if idle, service, start := r.latencies(&r.idle); idle.TotalCount() > 0 {
		res.P50IdleUs, res.P99IdleUs, _ = quantiles(idle)
		_, res.ServiceP99IdleUs, _ = quantiles(service)
		_, res.StartP99IdleUs, _ = quantiles(start)
	}
	res.Sent, res.Delivered, res.Failed = r.accounting()
	if load, ok := loadAverage(); ok {
		res.LoadAvg = &load
	}
	res.Rejected = r.rejected.Load()
	res.SendErrors = r.sendErrors.Load()
	res.Lost = int64(res.Sent) - int64(res.Delivered) - int64(res.Failed)
	r.mu.Lock()
	finishers := r.finishers
	r.mu.Unlock()
	for _, fn := range finishers {
		fn(&res)
	}
	return res
}

// quantiles returns p50, p99 and p99.9 of h in microseconds.
func quantiles(h *hdrhistogram.Histogram) (p50, p99, p999 *float64) {
	at := func(q float64) *float64 {
		us := float64(h.ValueAtQuantile(q)) / 1e3
		return &us
	}
	return at(50), at(99), at(99.9)
}

// median combines the repeats of one (scenario, system): each figure is the
// median over repeats; counts (lost, sent...) are summed so that no loss is
// averaged away, peaks are the highest and overload's bound the lowest.
func median(runs []Result) Result {
	if len(runs) == 0 {
		return Result{}
	}
	out := runs[0]
	out.Repeats = len(runs)
	med := func(get func(Result) float64) float64 {
		vals := make([]float64, len(runs))
		for i, r := range runs {
			vals[i] = get(r)
		}
		return medianOf(vals)
	}
	present := func(get func(Result) *float64) []float64 {
		var vals []float64
		for _, r := range runs {
			if p := get(r); p != nil {
				vals = append(vals, *p)
			}
		}
		return vals
	}
	// of combines the repeats' figures that are present with pick; nil
	// when none is.
	of := func(pick func([]float64) float64) func(get func(Result) *float64) *float64 {
		return func(get func(Result) *float64) *float64 {
			vals := present(get)
			if len(vals) == 0 {
				return nil
			}
			m := pick(vals)
			return &m
		}
	}
	medPtr, maxPtr, minPtr := of(medianOf), of(slices.Max[[]float64]), of(slices.Min[[]float64])
	out.MsgsPerSec = med(func(r Result) float64 { return r.MsgsPerSec })
	out.MBPerSec = med(func(r Result) float64 { return r.MBPerSec })
	out.CPUusPerMsg = med(func(r Result) float64 { return r.CPUusPerMsg })
	out.Seconds = med(func(r Result) float64 { return r.Seconds })
	out.P50us = medPtr(func(r Result) *float64 { return r.P50us })
	out.P99us = medPtr(func(r Result) *float64 { return r.P99us })
	out.P999us = medPtr(func(r Result) *float64 { return r.P999us })
	out.ServiceP50us = medPtr(func(r Result) *float64 { return r.ServiceP50us })
	out.ServiceP99us = medPtr(func(r Result) *float64 { return r.ServiceP99us })
	out.ServiceP999us = medPtr(func(r Result) *float64 { return r.ServiceP999us })
	out.P50IdleUs = medPtr(func(r Result) *float64 { return r.P50IdleUs })
	out.P99IdleUs = medPtr(func(r Result) *float64 { return r.P99IdleUs })
	out.ServiceP99IdleUs = medPtr(func(r Result) *float64 { return r.ServiceP99IdleUs })
	out.StartP50us = medPtr(func(r Result) *float64 { return r.StartP50us })
	out.StartP99us = medPtr(func(r Result) *float64 { return r.StartP99us })
	out.StartP99IdleUs = medPtr(func(r Result) *float64 { return r.StartP99IdleUs })
	out.LoadAvg = medPtr(func(r Result) *float64 { return r.LoadAvg })
	out.WritesPerMsg = medPtr(func(r Result) *float64 { return r.WritesPerMsg })
	out.VectoredWritesPerMsg = medPtr(func(r Result) *float64 { return r.VectoredWritesPerMsg })
	out.CPUsPerGB = medPtr(func(r Result) *float64 { return r.CPUsPerGB })
	out.PeakInboundBytes = maxPtr(func(r Result) *float64 { return r.PeakInboundBytes })
	// The highest peak against the lowest bound: no repeat's peak passes
	// for being set against a bound another repeat had.
	out.InboundLimitBytes = minPtr(func(r Result) *float64 { return r.InboundLimitBytes })
	out.PeakHeapBytes = maxPtr(func(r Result) *float64 { return r.PeakHeapBytes })
	out.PeakRSSBytes = maxPtr(func(r Result) *float64 { return r.PeakRSSBytes })
	out.RSSBoundBytes = medPtr(func(r Result) *float64 { return r.RSSBoundBytes })
	out.NodeLimitsBytes = medPtr(func(r Result) *float64 { return r.NodeLimitsBytes })
	out.PeakCountedBytes = maxPtr(func(r Result) *float64 { return r.PeakCountedBytes })
	out.CountedHeapRatio = medPtr(func(r Result) *float64 { return r.CountedHeapRatio })
	out.CountedLiveRatio = medPtr(func(r Result) *float64 { return r.CountedLiveRatio })
	out.PeakHeldBytes = maxPtr(func(r Result) *float64 { return r.PeakHeldBytes })
	out.OpenBytesPerPair = medPtr(func(r Result) *float64 { return r.OpenBytesPerPair })
	out.OpenStackBytesPerPair = medPtr(func(r Result) *float64 { return r.OpenStackBytesPerPair })
	out.OpenGoroutinesPerPair = medPtr(func(r Result) *float64 { return r.OpenGoroutinesPerPair })
	out.ClosedBytesPerPair = medPtr(func(r Result) *float64 { return r.ClosedBytesPerPair })
	out.ClosedStackBytesPerPair = medPtr(func(r Result) *float64 { return r.ClosedStackBytesPerPair })
	out.ClosedGoroutinesPerPair = medPtr(func(r Result) *float64 { return r.ClosedGoroutinesPerPair })
	out.CompressionRatio = medPtr(func(r Result) *float64 { return r.CompressionRatio })
	out.Overloaded = nil
	out.Lost, out.Sent, out.Delivered, out.Failed, out.Rejected, out.SendErrors, out.Samples = 0, 0, 0, 0, 0, 0, 0
	out.Drained = true
	for _, r := range runs {
		if r.Error != "" {
			out.Error = r.Error
		}
		if r.Overloaded != nil {
			n := *r.Overloaded
			if out.Overloaded != nil {
				n += *out.Overloaded
			}
			out.Overloaded = &n
		}
		out.Lost += r.Lost
		out.Sent += r.Sent
		out.Delivered += r.Delivered
		out.Failed += r.Failed
		out.Rejected += r.Rejected
		out.SendErrors += r.SendErrors
		out.Samples += r.Samples
		out.Drained = out.Drained && r.Drained
	}
	return out
}

// medianOf sorts vals and returns their median.
func medianOf(vals []float64) float64 {
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 0 {
		return (vals[n/2-1] + vals[n/2]) / 2
	}
	return vals[n/2]
}
