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
	window  *window                 // samples intended outside it are ignored
	mu      sync.Mutex              // guards the histograms
	latency *hdrhistogram.Histogram // from the intended start
	service *hdrhistogram.Histogram // from the actual call
	start   *hdrhistogram.Histogram // from the intended start to the call
}

// NewRecorder returns a recorder whose samples, those intended within the
// measured interval, join the run's result.
func (r *Run) NewRecorder() *Recorder { return r.newRecorder(&r.measure) }

// NewIdleRecorder returns a recorder for the Idle phase of a scenario: its
// samples, those intended within the idle interval, make the result's idle
// figures (p50_idle_us, p99_idle_us).
func (r *Run) NewIdleRecorder() *Recorder { return r.newRecorder(&r.idle) }

func (r *Run) newRecorder(w *window) *Recorder {
	rec := &Recorder{run: r, window: w, latency: newHistogram(), service: newHistogram(), start: newHistogram()}
	r.mu.Lock()
	r.recorders = append(r.recorders, rec)
	r.mu.Unlock()
	return rec
}

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, int64(60*time.Second), 3) }

// Record adds one operation if intended falls inside the recorder's
// window: end−intended as latency, end−called as service time, and
// called−intended as the start delay.
func (rec *Recorder) Record(intended, called, end time.Time) {
	if !rec.window.contains(rec.run.since(intended)) {
		return
	}
	rec.mu.Lock()
	_ = rec.latency.RecordValue(end.Sub(intended).Nanoseconds()) // beyond 60 s: dropped
	_ = rec.service.RecordValue(end.Sub(called).Nanoseconds())
	_ = rec.start.RecordValue(called.Sub(intended).Nanoseconds())
	rec.mu.Unlock()
}

// latencies merges the recorders of window w: latency from the intended
// start, service time, and start delay.
func (r *Run) latencies(w *window) (latency, service, start *hdrhistogram.Histogram) {
	latency, service, start = newHistogram(), newHistogram(), newHistogram()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recorders {
		if rec.window != w {
			continue
		}
		rec.mu.Lock()
		latency.Merge(rec.latency)
		service.Merge(rec.service)
		start.Merge(rec.start)
		rec.mu.Unlock()
	}
	return latency, service, start
}
