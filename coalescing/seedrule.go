package coalescing

import "time"

// EnoughMessages is the batch size at which Fixed, MovingAverage and
// TimeHorizon stop waiting and write at once. The article's strategies drained
// at most maxItems messages per write; Cassandra later added the early exit
// otc_coalescing_enough_coalesced_messages with this default, 8. (The article
// notes that its strategies never flush early on bytes: these three do not.)
const EnoughMessages = 8

// doublingWait is the article's rule, shared by MovingAverage and TimeHorizon:
// "Messages are coalesced by doubling the amount of time waited, up to
// otc_coalescing_window_us if that would potentially double the number of
// messages coalesced based on the average gap."
//
// Waiting pending×averageGap is expected to double the batch; if even that
// exceeds the window, it does not wait at all. Otherwise it assumes the
// doubled batch arrives and applies the rule again, doubling the wait while
// twice the wait stays under the window. The answer therefore lies in
// [window/2, window] whenever it is positive.
func doublingWait(pending int, averageGap, window time.Duration) time.Duration {
	if pending <= 0 || averageGap <= 0 || time.Duration(pending) > window/averageGap {
		return 0 // pending×averageGap > window (tested without overflowing)
	}
	wait := time.Duration(pending) * averageGap
	for wait*2 < window {
		wait *= 2
	}
	return wait
}
