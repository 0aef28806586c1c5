package sockstat

import "time"

// TCPInfo is the part of the kernel's TCP_INFO worth exporting per
// connection. Segment counts are in segments of SndMSS bytes. It is a plain
// value.
type TCPInfo struct {
	// State is the kernel's TCP state: 1 established, 7 closed, 8 close-wait…
	State uint8
	// RTT is the smoothed round-trip time and RTTVar its mean deviation,
	// both at the kernel's microsecond resolution.
	RTT, RTTVar time.Duration
	// SndCwnd is the congestion window, in segments.
	SndCwnd uint32
	// SndMSS is the sender's maximum segment size, in bytes.
	SndMSS uint32
	// Unacked is the number of segments sent and not yet acknowledged.
	Unacked uint32
	// Lost is the number of segments the sender currently presumes lost.
	Lost uint32
	// TotalRetrans is the number of segments retransmitted over the
	// connection's life.
	TotalRetrans uint32
	// RcvSpace is receive-buffer autotuning's estimate, in bytes, of what
	// the application drains per round trip.
	RcvSpace uint32
	// NotSentBytes is the part of the send queue not yet sent at all,
	// in bytes; meaningful only when HasNotSentBytes (Linux 4.6 and later).
	NotSentBytes    uint32
	HasNotSentBytes bool
}
