package sockstat

import "sync/atomic"

// Peak tracks the maximum of a gauge, such as a socket queue depth, over an
// export interval: the code that changes the gauge calls Observe with each
// reading, and the exporter calls TakeAndReset once per interval.
//
// An interval starts from the last value observed, not from 0: a queue that
// stayed full without being measured again — a writer blocked on a peer that
// stopped reading makes no more flushes — was still full during the
// interval, and reporting 0 would hide exactly that.
//
// Readings are expected to be non-negative: the zero value reports 0 until
// something larger is observed. The zero value is ready to use. Peak is
// safe for concurrent use and does not allocate.
type Peak struct {
	peak atomic.Int64 // the maximum since the interval started
	last atomic.Int64 // the most recent observation
}

// Observe records one reading of the gauge.
func (p *Peak) Observe(v int64) {
	p.last.Store(v)
	p.raise(v)
}

// Raise records a reading taken apart from the code that changes the
// gauge — an exporter asking the socket as it collects, while the writer
// is blocked in a write it has not finished, so that no reading of its own
// comes — in the current interval only: the next starts from the last
// value Observe recorded. Such a reading may be older than that value (a
// connection that closed meanwhile observed 0), and carried on it would be
// reported at every collection after.
func (p *Peak) Raise(v int64) { p.raise(v) }

// TakeAndReset returns the maximum observed since the previous call (or, on
// the first call, since the Peak was made), and starts a new interval whose
// maximum is the last value observed.
func (p *Peak) TakeAndReset() int64 {
	peak := p.peak.Swap(p.last.Load())
	// An Observe between the Load and the Swap may have stored a newer last
	// value whose raise the Swap overwrote; raise it again.
	p.raise(p.last.Load())
	return peak
}

// Max returns the maximum of the current interval without ending it; a
// Peak that is never reset therefore reports the maximum ever observed.
func (p *Peak) Max() int64 { return p.peak.Load() }

// raise sets peak to v if v is larger.
func (p *Peak) raise(v int64) {
	for {
		cur := p.peak.Load()
		if v <= cur || p.peak.CompareAndSwap(cur, v) {
			return
		}
	}
}
