package coalescing

import "time"

// Strategy decides, for one connection, how long its writer waits for more
// messages before it writes what is pending. One instance serves exactly one
// connection and is called only from that connection's writer goroutine, so
// implementations need no locking and are not safe for concurrent use.
//
// A Strategy is pure: it never reads a clock, sleeps or starts goroutines.
// Every time it needs is passed in by the writer.
//
// The writer's loop is:
//
//	for each message taken from the queue: s.Observe(enqueuedAt, size)
//	wait := s.Wait(now, pendingMessages, pendingBytes)
//	if wait > 0 { sleep up to wait, or until more arrive; observe those too }
//	write; s.Flushed(now, messages, bytes, wait, waited)
type Strategy interface {
	// Observe records one message taken by the writer: when a producer
	// enqueued it and its encoded size in bytes.
	Observe(enqueuedAt time.Time, size int)

	// Wait returns how long the writer should wait for more messages before
	// writing, given what is pending now. Zero means write at once. The
	// result never exceeds the strategy's window. The writer asks again
	// as messages arrive, and each answer replaces what is left of the
	// wait: every strategy in this package caps the answers until the
	// next Flushed by the deadline of the first positive one, so one
	// write never waits longer in total than the window. (The transport's
	// writer ends one write's wait WindowLimit after it began whatever
	// the answers, so that a strategy without that cap cannot hold a
	// steady stream of messages for good.)
	Wait(now time.Time, pendingMessages, pendingBytes int) time.Duration

	// Flushed reports one write: how many messages and bytes it carried, the
	// wait the strategy asked for, and the wait the writer really observed
	// (sleeps overshoot; the difference is worth knowing). The writer may
	// not wait a positive answer (a queued message's deadline comes
	// sooner, or it is draining): it then reports requested as 0.
	Flushed(now time.Time, messages, bytes int, requested, observed time.Duration)

	// Stats returns what the strategy has seen and done so far.
	Stats() Stats
}

// Stats describes one strategy's recent behaviour. It is a plain value:
// Strategy.Stats returns a copy the caller may keep.
type Stats struct {
	Strategy       string        // strategy name as accepted by ByName, e.g. "adaptive"
	Window         time.Duration // current maximum wait (adaptive strategies move it)
	AverageGap     time.Duration // average gap between observed messages (see each strategy)
	Writes         uint64        // flushes reported
	Messages       uint64        // messages in those flushes
	Bytes          uint64        // bytes in those flushes
	RequestedWait  time.Duration // total wait requested
	ObservedWait   time.Duration // total wait observed by the writer
	BatchHistogram [BatchBuckets]uint64

	Waited        uint64 // flushes for which a wait was requested (requested > 0)
	EarlyFlushes  uint64 // Wait calls answered with zero because the batch was already full
	WindowGrowths uint64 // times the window was widened (Adaptive only)
	WindowShrinks uint64 // times the window was narrowed (Adaptive only)
}

// BatchBuckets is the number of buckets in Stats.BatchHistogram. Bucket i
// counts writes that carried between 2^(i-1)+1 and 2^i messages (bucket 0: one
// message); the last bucket also counts everything larger.
const BatchBuckets = 12
