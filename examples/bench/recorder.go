package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Recorder collects latencies into HdrHistograms (1 ns to 60 s, three
// significant figures). It is safe for concurrent use; give busy
// goroutines separate recorders to avoid contention.
type Recorder struct {
	run     *Run
	mu      sync.Mutex              // guards the histograms
	latency *hdrhistogram.Histogram // from the intended start
	service *hdrhistogram.Histogram // from the actual call
}

// NewRecorder returns a recorder whose samples join the run's result.
func (r *Run) NewRecorder() *Recorder {
	rec := &Recorder{run: r, latency: newHistogram(), service: newHistogram()}
	r.recMu.Lock()
	r.recorders = append(r.recorders, rec)
	r.recMu.Unlock()
	return rec
}

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, int64(60*time.Second), 3) }

// Record adds one operation if intended falls inside the measurement
// window: end−intended as latency, end−called as service time.
func (rec *Recorder) Record(intended, called, end time.Time) {
	at := intended.Sub(rec.run.base).Nanoseconds()
	if at < rec.run.windowStart.Load() || at >= rec.run.windowEnd.Load() {
		return
	}
	rec.mu.Lock()
	_ = rec.latency.RecordValue(end.Sub(intended).Nanoseconds()) // beyond 60 s: dropped
	_ = rec.service.RecordValue(end.Sub(called).Nanoseconds())
	rec.mu.Unlock()
}

// latencies merges every recorder: latency from the intended start, and
// service time.
func (r *Run) latencies() (latency, service *hdrhistogram.Histogram) {
	latency, service = newHistogram(), newHistogram()
	r.recMu.Lock()
	defer r.recMu.Unlock()
	for _, rec := range r.recorders {
		rec.mu.Lock()
		latency.Merge(rec.latency)
		service.Merge(rec.service)
		rec.mu.Unlock()
	}
	return latency, service
}
