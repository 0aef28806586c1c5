package coalescing

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdaptiveWait(t *testing.T) {
	// A new Adaptive waits at most its probe window, 200µs/4 = 50µs.
	tests := []struct {
		name         string
		gaps         []time.Duration
		size         int
		pending      int
		pendingBytes int
		want         time.Duration
	}{
		{"nothing pending", repeat(16, us(10)), 100, 0, 0, 0},
		{"new connection: sparse", repeat(15, us(10)), 100, 1, 100, 0},
		{"dense: the window (fill would take 2×127×10µs)", repeat(16, us(10)), 100, 1, 100, us(50)},
		{"gap equal to the window: one message expected, waits", repeat(16, us(50)), 100, 1, 100, us(50)},
		{"gap above the window, within MaxWindow: waits the window", repeat(16, us(51)), 100, 1, 100, us(50)},
		{"gap above MaxWindow: sparse, never waits", repeat(16, us(201)), 100, 1, 100, 0},
		{"a frame's worth of bytes pending: write now", repeat(16, us(10)), 100, 1, 64 << 10, 0},
		{"FlushMessages pending: write now", repeat(16, us(10)), 100, 128, 12800, 0},
		{"one 4 KiB message from a full frame: twice one gap", repeat(16, us(10)), 4096, 15, 15 * 4096, us(20)},
		{"two messages from FlushMessages: twice two gaps", repeat(16, us(10)), 10, 126, 1260, us(40)},
		{"simultaneous messages: 1 ns gap, twice 127 ns", repeat(16, 0), 100, 1, 100, 254},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAdaptive(AdaptiveConfig{})
			now := observeGaps(a, tt.gaps, tt.size)
			assert.Equal(t, tt.want, a.Wait(now, tt.pending, tt.pendingBytes))
		})
	}
}

// adaptiveDriver feeds an Adaptive one message per microsecond of enqueue
// time, so that its average gap stays exactly 1µs whatever the writes report,
// and it waits whenever its window is positive. The writer's clock (now)
// runs separately: the reports are what is under test.
type adaptiveDriver struct {
	a        *Adaptive
	enqueued time.Time // enqueue time of the last message
	now      time.Time // the writer's clock
}

// Throughput trials are off: the driver tests the gains rule and the
// probes alone (see TestAdaptiveTrials for the trials).
func newAdaptiveDriver(cfg AdaptiveConfig) *adaptiveDriver {
	d := &adaptiveDriver{a: NewAdaptive(cfg)}
	d.a.trialInterval = math.MaxInt
	d.enqueued = observeGaps(d.a, repeat(16, us(1)), 100)
	d.now = d.enqueued
	return d
}

// write plays one write: pending messages queued, a wait if Adaptive asks,
// and a write carrying messages after observed. It returns the wait asked.
func (d *adaptiveDriver) write(pending, messages int, observed time.Duration) time.Duration {
	d.enqueued = d.enqueued.Add(us(1))
	d.a.Observe(d.enqueued, 100)
	w := d.a.Wait(d.now, pending, 100*pending)
	if w == 0 {
		observed = 0
	}
	d.now = d.now.Add(observed + us(1))
	d.a.Flushed(d.now, messages, 100*messages, w, observed)
	return w
}

// period plays one evaluation period of waited writes.
func (d *adaptiveDriver) period(pending, messages int, observed time.Duration) {
	for range adaptivePeriodWrites {
		d.write(pending, messages, observed)
	}
}

func TestAdaptiveTuning(t *testing.T) {
	// Every write waits 10µs at a 1µs gap, so the arrival rate promises 10
	// messages a write; the waits pay when they gain ≥ MinGrowth (1) a wait
	// and ≥ 5 (half the promise). Windows in ns, computed by hand: +¼ or ÷2.
	steps := []struct {
		name       string
		pending    int
		messages   int
		wantWindow time.Duration
	}{
		{"probe pays: 50000 + 12500", 1, 11, 62500},
		{"pays again: + 15625", 1, 11, 78125},
		{"grew, but gathered 4 of 10 promised: idle, halve", 1, 5, 39062},
		{"gained nothing: halve", 1, 1, 19531},
		{"pays: + 4882", 1, 11, 24413},
		{"eight pending, seven gained: not doubled, but pays (closed loop)", 8, 15, 30516},
		{"sixteen pending, none gained: halve", 16, 16, 15258},
		{"gained nothing: halve", 1, 1, 7629},
		{"gained nothing: below MaxWindow/32 = 6250, zero", 1, 1, 0},
	}
	d := newAdaptiveDriver(AdaptiveConfig{})
	require.Equal(t, us(50), d.a.Stats().Window, "starts on a probe at MaxWindow/4")
	for _, s := range steps {
		d.period(s.pending, s.messages, us(10))
		assert.Equal(t, s.wantWindow, d.a.Stats().Window, s.name)
	}
	st := d.a.Stats()
	assert.Equal(t, uint64(4), st.WindowGrowths)
	assert.Equal(t, uint64(5), st.WindowShrinks)
}

func TestAdaptiveGrowsToMaxWindow(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	want := []time.Duration{62500, 78125, 97656, 122070, 152587, 190733, 200000, 200000}
	for i, w := range want {
		d.period(1, 11, us(10))
		assert.Equal(t, w, d.a.Stats().Window, "period %d", i)
	}
	assert.Equal(t, uint64(7), d.a.Stats().WindowGrowths, "no growth counted at the ceiling")
}

// emptyWaits plays the adaptiveEmptyWaits writes whose waits gather
// nothing that end a probe.
func (d *adaptiveDriver) emptyWaits() {
	for range adaptiveEmptyWaits {
		d.write(1, 1, us(10))
	}
}

func TestAdaptiveProbes(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for range adaptiveEmptyWaits - 1 {
		require.Equal(t, us(50), d.write(1, 1, us(10)))
	}
	d.write(1, 1, us(10))
	require.Zero(t, d.a.Stats().Window, "the starting probe fails after four waits that gathered nothing: straight to zero")

	// At zero it never waits. Each failed probe doubles the writes before
	// the next: 64 → 128 → 256.
	for _, interval := range []int{128, 256} {
		for i := range interval - 1 {
			require.Zero(t, d.write(1, 1, us(10)), "write %d of %d", i, interval)
		}
		d.write(1, 1, us(10))
		require.Equal(t, us(50), d.a.Stats().Window, "probe after %d writes", interval)
		d.emptyWaits()
		require.Zero(t, d.a.Stats().Window, "probe after %d writes fails", interval)
	}
	for range 512 {
		d.write(1, 1, us(10))
	}
	require.Equal(t, us(50), d.a.Stats().Window, "probe after 512 writes")
	// A probe whose waits gather a little runs its whole period: the
	// gains rule judges it.
	d.period(1, 2, us(10))
	require.Zero(t, d.a.Stats().Window, "a probe that gathers too little fails")
	for range 1024 {
		d.write(1, 1, us(10))
	}
	require.Equal(t, us(50), d.a.Stats().Window, "probe after 1024 writes")
	d.period(1, 11, us(10))
	assert.Equal(t, time.Duration(62500), d.a.Stats().Window, "a probe that pays grows")
	assert.Equal(t, adaptiveMinProbeInterval, d.a.probeInterval, "and resets the interval")
}

func TestAdaptiveProbeIntervalIsCapped(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for range 12 { // 64·2^12 would be far past the cap
		d.emptyWaits()
		for d.a.Stats().Window == 0 {
			d.write(1, 1, us(10))
		}
	}
	assert.Equal(t, adaptiveMaxProbeInterval, d.a.probeInterval)
}

func TestAdaptiveDoesNotProbeSparseTraffic(t *testing.T) {
	a := NewAdaptive(AdaptiveConfig{})
	a.window, a.probing = 0, false
	now := t0
	for range 10 * adaptiveMaxProbeInterval {
		now = now.Add(time.Millisecond)
		a.Observe(now, 100)
		require.Zero(t, a.Wait(now, 1, 100))
		a.Flushed(now, 1, 100, 0, 0)
	}
	assert.Zero(t, a.Stats().Window)
}

func TestAdaptiveIgnoresWritesItDidNotWaitFor(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for range 10 * adaptivePeriodWrites {
		d.write(EnoughMessages*100, 1, us(10)) // full: never waits, so never judged
	}
	assert.Equal(t, us(50), d.a.Stats().Window)
	assert.Equal(t, uint64(10*adaptivePeriodWrites), d.a.Stats().EarlyFlushes)
}

func TestAdaptiveConfig(t *testing.T) {
	def := DefaultAdaptiveConfig()
	assert.Equal(t, AdaptiveConfig{MaxWindow: us(200), FlushBytes: 64 << 10, FlushMessages: 128, MinGrowth: 1, PacketBytes: 1448}, def)
	require.NoError(t, def.Validate())
	require.NoError(t, AdaptiveConfig{}.Validate(), "zero fields mean defaults")
	assert.Equal(t, def, NewAdaptive(AdaptiveConfig{}).Config())

	invalid := []AdaptiveConfig{
		{MaxWindow: -1},
		{MaxWindow: WindowLimit + 1},
		{FlushBytes: -1},
		{FlushBytes: 1<<30 + 1},
		{FlushMessages: -1},
		{FlushMessages: 1<<20 + 1},
		{MinGrowth: -0.5},
		{MinGrowth: math.NaN()},
		{MinGrowth: 65},
		{PacketBytes: -1},
		{PacketBytes: 64<<10 + 1},
		{FlushBytes: 1000, PacketBytes: 1448},
	}
	for _, c := range invalid {
		err := c.Validate()
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
		// NewAdaptive never fails: out-of-range fields are clamped or defaulted.
		got := NewAdaptive(c).Config()
		assert.NoError(t, got.Validate(), "%+v", got)
	}
	assert.Equal(t, WindowLimit, NewAdaptive(AdaptiveConfig{MaxWindow: time.Hour}).Config().MaxWindow)

	c := AdaptiveConfig{MaxWindow: us(400)}
	a := NewAdaptive(c)
	assert.Equal(t, us(100), a.Stats().Window, "probe window is MaxWindow/4")
	assert.Equal(t, AdaptiveConfig{MaxWindow: us(400)}, c, "the caller's config is not modified")
}

// Only the first waits of a rise count: a probe whose third wait gathered
// a message runs its whole period, however many of its other waits
// gathered nothing, and the gains rule then judges it.
func TestAdaptiveEmptyWaitsMustComeFirst(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	d.write(1, 1, us(10))
	d.write(1, 1, us(10))
	d.write(1, 2, us(10)) // gathered one
	for i := 3; i < adaptivePeriodWrites-1; i++ {
		d.write(1, 1, us(10))
		require.Equal(t, us(50), d.a.Stats().Window, "write %d: the probe runs on", i)
	}
	d.write(1, 1, us(10))
	assert.Zero(t, d.a.Stats().Window, "the gains rule fails it at the end of its period")
}

// A throughput trial from window zero whose first four waits gathered
// nothing pins the window at zero — it does not merely return to an
// unpinned zero — so no probe follows, only the next trial.
func TestAdaptiveEmptyTrialPinsZero(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	d.a.window, d.a.probing = 0, false
	d.a.trialInterval = adaptiveMinTrialInterval
	writes := 0
	for !d.a.trial.active { // probes on the way fail, each after four waits
		d.write(1, 1, us(10))
		writes++
		require.Less(t, writes, 2*adaptiveMinTrialInterval)
	}
	require.Equal(t, DefaultWindow, d.a.Stats().Window, "the trial tries MaxWindow")
	for i := range adaptiveEmptyWaits {
		require.Equal(t, DefaultWindow, d.a.Stats().Window, "wait %d", i)
		d.write(1, 1, us(200))
	}
	assert.Zero(t, d.a.Stats().Window)
	assert.Equal(t, pinNoWait, d.a.pin)
	// Pinned at zero: no probe, however many writes, until the next trial
	// (an unpinned zero would probe after adaptiveMinProbeInterval).
	d.a.probeInterval, d.a.writesAtZero = adaptiveMinProbeInterval, 0
	for i := range adaptiveMinTrialInterval - adaptiveRateWrites {
		d.write(1, 1, us(10))
		require.Zero(t, d.a.Stats().Window, "write %d after the trial", i)
	}
}

// TestAdaptiveIgnoresWaitsTheWriterDidNotWait: an answer to wait that the
// writer overrode (a queued message's deadline came sooner, or the
// transport was draining) is reported with requested 0. Adaptive took it
// as a wait that gathered nothing: it shrank its idle bound, and four of
// them ended the starting probe, the window dropped to zero.
func TestAdaptiveIgnoresWaitsTheWriterDidNotWait(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for i := range 4 * adaptiveEmptyWaits {
		d.enqueued = d.enqueued.Add(us(1))
		d.a.Observe(d.enqueued, 100)
		require.Equal(t, us(50), d.a.Wait(d.now, 1, 100), "write %d: the probe's window", i)
		d.now = d.now.Add(us(1))
		d.a.Flushed(d.now, 1, 100, 0, 0) // written at once: the writer did not wait
	}
	assert.Equal(t, us(50), d.a.Stats().Window, "the probe runs on: none of its waits was waited")
}
