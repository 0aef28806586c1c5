package coalescing

import (
	"math/rand/v2"
	"slices"
	"time"
)

// arrival is one message enqueued on a connection.
type arrival struct {
	at   time.Time
	size int
}

// ask is one Wait call the simulated writer made.
type ask struct {
	now          time.Time
	pending      int
	pendingBytes int
	window       time.Duration // Stats().Window just before the call
	answer       time.Duration
}

// write is one write the simulated writer made.
type write struct {
	messages, bytes     int
	requested, observed time.Duration
	done                time.Time     // when the write finished
	window              time.Duration // Stats().Window just after Flushed
	latency             time.Duration // summed over its messages: done − enqueued
}

// simulateWriter plays arrivals through s the way the transport's writer
// drives a strategy: take everything queued, ask Wait, wait for at most the
// answer while asking again after each arrival, write (writeCost), report
// Flushed.
func simulateWriter(s Strategy, arrivals []arrival, writeCost time.Duration) (asks []ask, writes []write) {
	window := func() time.Duration { return s.Stats().Window }
	if a, ok := s.(*Adaptive); ok {
		window = func() time.Duration { return a.window } // cheaper than copying Stats under -race
	}
	next := 0
	var now time.Time
	for next < len(arrivals) {
		if now.Before(arrivals[next].at) {
			now = arrivals[next].at // idle until work arrives
		}
		first := next
		var pending, pendingBytes int
		take := func() {
			for next < len(arrivals) && !arrivals[next].at.After(now) {
				s.Observe(arrivals[next].at, arrivals[next].size)
				pending++
				pendingBytes += arrivals[next].size
				next++
			}
		}
		askWait := func() time.Duration {
			a := ask{now: now, pending: pending, pendingBytes: pendingBytes, window: window()}
			a.answer = s.Wait(now, pending, pendingBytes)
			asks = append(asks, a)
			return a.answer
		}
		take()
		start := now
		requested := askWait()
		for wait := requested; wait > 0; {
			deadline := now.Add(wait)
			if next >= len(arrivals) || arrivals[next].at.After(deadline) {
				now = deadline
				break
			}
			now = arrivals[next].at
			take()
			wait = askWait()
		}
		observed := now.Sub(start)
		now = now.Add(writeCost)
		s.Flushed(now, pending, pendingBytes, requested, observed)
		w := write{messages: pending, bytes: pendingBytes, requested: requested, observed: observed, done: now, window: window()}
		for _, a := range arrivals[first:next] {
			w.latency += now.Sub(a.at)
		}
		writes = append(writes, w)
	}
	return asks, writes
}

// poissonTrace returns n arrivals with exponential gaps of the given mean
// and sizes drawn uniformly from [minSize, maxSize].
func poissonTrace(rng *rand.Rand, n int, meanGap time.Duration, minSize, maxSize int) []arrival {
	arrivals := make([]arrival, n)
	at := t0
	for i := range arrivals {
		at = at.Add(time.Duration(rng.ExpFloat64() * float64(meanGap)))
		arrivals[i] = arrival{at: at, size: minSize + rng.IntN(maxSize-minSize+1)}
	}
	return arrivals
}

// mixedTrace returns n arrivals in phases of random kinds: dense, sparse,
// bursts of simultaneous messages, and long silences.
func mixedTrace(rng *rand.Rand, n int) []arrival {
	arrivals := make([]arrival, 0, n)
	at := t0
	for len(arrivals) < n {
		phase := min(1+rng.IntN(200), n-len(arrivals))
		kind := rng.IntN(4)
		meanGap := []time.Duration{us(1 + rng.Float64()*20), us(500 + rng.Float64()*20000), 0, 0}[kind]
		if kind == 3 {
			at = at.Add(time.Duration(rng.Int64N(int64(3 * time.Second))))
		}
		for range phase {
			at = at.Add(time.Duration(rng.ExpFloat64() * float64(meanGap)))
			arrivals = append(arrivals, arrival{at: at, size: 1 + rng.IntN(16<<10)})
		}
	}
	return arrivals
}

// closedLoop describes a closed-loop sender for simulateClosedLoop: inFlight
// requests, each sent again as soon as its answer is back, over a link that
// passes one packet of at most mss bytes every packetTime (zero: no cap),
// with returnDelay from the moment a message's packet leaves the link to the
// moment its answer is enqueued again. The receiver answers the messages of
// one packet one after another, serviceTime apart, and each answer is
// delayed a further exponential jitter of mean jitter (scheduling). A
// receiver with a recvWriteCost takes the writes one at a time, each for
// that long (the system calls and wake-ups a write costs the other side,
// where a batch saves those rather than packets), before it answers.
type closedLoop struct {
	inFlight      int
	size          int
	mss           int
	packetTime    time.Duration
	returnDelay   time.Duration
	writeCost     time.Duration
	recvWriteCost time.Duration
	serviceTime   time.Duration
	jitter        time.Duration
	span          time.Duration // simulated time
	seed          uint64
}

// closedLoopResult is what simulateClosedLoop measured.
type closedLoopResult struct {
	messages  int           // messages written in the second half of the span (after warm-up)
	packets   int           // packets they took
	roundTrip time.Duration // mean time from enqueue to write, of those messages
	stats     Stats
}

func (r closedLoopResult) perSecond(span time.Duration) float64 {
	return float64(r.messages) / (span / 2).Seconds()
}

// simulateClosedLoop drives s the way the transport's writer does (see
// simulateWriter) with arrivals that depend on the writes: each message
// written comes back as a new message once its packet has crossed the link
// and its answer has returned. A write of b bytes is ceil(b/mss) packets;
// the link serves packets in order, one per packetTime.
func simulateClosedLoop(s Strategy, l closedLoop) closedLoopResult {
	rng := rand.New(rand.NewPCG(l.seed, 1))
	future := make([]time.Time, 0, l.inFlight) // sorted enqueue times to come
	for i := range l.inFlight {
		future = append(future, t0.Add(time.Duration(i)*time.Microsecond))
	}
	insert := func(at time.Time) {
		i, _ := slices.BinarySearchFunc(future, at, func(a, b time.Time) int { return a.Compare(b) })
		future = slices.Insert(future, i, at)
	}
	end := t0.Add(l.span)
	var res closedLoopResult
	var roundTrips time.Duration
	var linkFree, recvFree, now time.Time
	now, linkFree, recvFree = t0, t0, t0
	for now.Before(end) {
		if now.Before(future[0]) {
			now = future[0]
		}
		var batch []time.Time
		take := func() {
			for len(future) > 0 && !future[0].After(now) {
				s.Observe(future[0], l.size)
				batch = append(batch, future[0])
				future = future[1:]
			}
		}
		take()
		start := now
		requested := s.Wait(now, len(batch), len(batch)*l.size)
		for wait := requested; wait > 0; {
			deadline := now.Add(wait)
			if len(future) == 0 || future[0].After(deadline) {
				now = deadline
				break
			}
			now = future[0]
			take()
			wait = s.Wait(now, len(batch), len(batch)*l.size)
		}
		observed := now.Sub(start)
		now = now.Add(l.writeCost)
		bytes := len(batch) * l.size
		packets := 1
		if l.mss > 0 {
			packets = (bytes + l.mss - 1) / l.mss
		}
		linkFree = later(linkFree, now).Add(time.Duration(packets) * l.packetTime)
		received := linkFree
		if l.recvWriteCost > 0 {
			recvFree = later(recvFree, linkFree).Add(l.recvWriteCost)
			received = recvFree
		}
		back := received.Add(l.returnDelay)
		for i := range batch {
			at := back.Add(time.Duration(i)*l.serviceTime + time.Duration(rng.ExpFloat64()*float64(l.jitter)))
			insert(at)
		}
		s.Flushed(now, len(batch), bytes, requested, observed)
		if now.Sub(t0) >= l.span/2 {
			res.messages += len(batch)
			res.packets += packets
			for _, enqueued := range batch {
				roundTrips += now.Sub(enqueued)
			}
		}
	}
	res.roundTrip = roundTrips / time.Duration(max(res.messages, 1))
	res.stats = s.Stats()
	return res
}
