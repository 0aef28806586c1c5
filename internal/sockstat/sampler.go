package sockstat

// Defaults of a Sampler's bounds.
const (
	// DefaultSampleEvery is how often a Sampler measures a quiet socket at
	// least: one read or write in this many.
	DefaultSampleEvery = 16
	// DefaultSampleBytes bounds the bytes a Sampler lets pass unmeasured.
	DefaultSampleBytes = 16 << 10
)

// Sampler decides which of a socket's writes (or reads) are followed by a
// queue measurement, so that a connection carrying sparse traffic pays an
// ioctl for one write in Every rather than for each, while a queue that
// builds up is measured at every step and its peak caught. An event is
// measured when:
//
//   - the caller reports it slow: the write waited for room in the send
//     buffer (so the queue was full), or reading had paused;
//   - the last reading showed a backlog — more queued than the caller says
//     a quiet socket holds: for a send queue, more than the write just made
//     (the rest was there before it); for a receive queue, anything. Then
//     every event is measured until a reading shows none;
//   - Every events, or Bytes bytes, went unmeasured since the last reading;
//   - no reading was taken yet.
//
// A queue grows only by what is written to it, so between two readings it
// grows by less than Bytes unless an event is measured; a queue that goes
// on growing shows a backlog at its next reading, after which every event
// is measured. What a Sampler can miss of a peak is therefore less than
// Bytes, and only when the burst that built the peak ended before its next
// reading.
//
// Sampler is pure policy: it takes no time and does no I/O. It is not safe
// for concurrent use: it belongs to the one loop that writes (or reads) the
// socket. The zero value uses the defaults.
type Sampler struct {
	// Every is how many events a quiet socket may pass unmeasured, plus
	// one: 1 measures every event; 0 means DefaultSampleEvery.
	Every int
	// Bytes is how many bytes may pass unmeasured; 0 means
	// DefaultSampleBytes.
	Bytes int

	events  int  // events since the last reading
	bytes   int  // bytes of those events and of this one
	backlog bool // the last reading showed a backlog
	started bool // a reading was taken
}

// Due reports whether the event just done — a write or read of n bytes —
// should be measured; slow says the caller knows the queue may be at a
// peak (the write waited for room, reading had paused). When Due returns
// true the caller measures and passes the reading to Record.
func (s *Sampler) Due(n int, slow bool) bool {
	every, limit := s.Every, s.Bytes
	if every <= 0 {
		every = DefaultSampleEvery
	}
	if limit <= 0 {
		limit = DefaultSampleBytes
	}
	s.events++
	s.bytes += n
	if slow || s.backlog || !s.started || s.events >= every || s.bytes >= limit {
		s.events, s.bytes = 0, 0
		return true
	}
	return false
}

// Record takes a reading of depth bytes, where quiet is the most a socket
// with no backlog would show at this point (see Sampler).
func (s *Sampler) Record(depth, quiet int) {
	s.started = true
	s.backlog = depth > quiet
}
