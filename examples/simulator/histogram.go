package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are counted in log-linear buckets: 8 per power of two of
// nanoseconds, so a bucket is at most 12.5% wide, from 1 ns to about 18
// minutes. Recording is one atomic add, safe from any goroutine.
const (
	subBucketBits = 3
	subBuckets    = 1 << subBucketBits
	maxExp        = 40 // 2^41 ns is about 36 minutes
	numBuckets    = (maxExp - subBucketBits + 2) * subBuckets
)

type histogram struct {
	counts [numBuckets]atomic.Uint64
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	exp := bits.Len64(v) - 1
	if exp < subBucketBits {
		return int(v) // exact below 8 ns
	}
	i := (exp-subBucketBits+1)*subBuckets + int(v>>(exp-subBucketBits))&(subBuckets-1)
	return min(i, numBuckets-1)
}

// bucketMid returns the middle of bucket i's range.
func bucketMid(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	exp, sub := i/subBuckets+subBucketBits-1, i%subBuckets
	low := uint64(subBuckets+sub) << (exp - subBucketBits)
	width := uint64(1) << (exp - subBucketBits)
	return time.Duration(low + width/2)
}

func (h *histogram) record(d time.Duration) { h.counts[bucketOf(d)].Add(1) }

func (h *histogram) snapshot() histSnapshot {
	var s histSnapshot
	for i := range h.counts {
		s[i] = h.counts[i].Load()
	}
	return s
}

// histSnapshot is a histogram's counts at one moment: plain values, so
// that intervals are differences of snapshots.
type histSnapshot [numBuckets]uint64

func (s *histSnapshot) add(o *histSnapshot) {
	for i := range s {
		s[i] += o[i]
	}
}

// minus returns s - prev: what was recorded between the two snapshots.
func (s *histSnapshot) minus(prev *histSnapshot) histSnapshot {
	var d histSnapshot
	for i := range s {
		d[i] = s[i] - prev[i]
	}
	return d
}

func (s *histSnapshot) count() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// quantile returns the q-quantile (0 < q <= 1), or 0 with no samples.
func (s *histSnapshot) quantile(q float64) time.Duration {
	total := s.count()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range s {
		seen += c
		if seen >= rank {
			return bucketMid(i)
		}
	}
	return 0
}

// percentiles summarises a snapshot, in milliseconds, for reports.
type percentiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func (s *histSnapshot) percentiles() percentiles {
	return percentiles{Count: s.count(), P50: ms(s.quantile(0.5)), P90: ms(s.quantile(0.9)),
		P99: ms(s.quantile(0.99)), P999: ms(s.quantile(0.999)), Max: ms(s.quantile(1))}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
