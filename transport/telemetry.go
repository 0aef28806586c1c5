package transport

import (
	"context"
	"errors"
	"math"
	"net"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// instrumentationName names this library's meter and tracer.
const instrumentationName = "github.com/internode/internode/transport"

// telemetry holds the transport's OpenTelemetry instruments. Counters
// and gauges are observed from the transport's own atomic counters when
// the reader collects, so they cost nothing per message; only the
// histograms are recorded as things happen, with attribute sets computed
// once per connection or verb.
type telemetry struct {
	tracer          trace.Tracer
	propagator      propagation.TextMapPropagator
	batchMessages   metric.Int64Histogram
	coalesceWait    metric.Float64Histogram
	requestDuration metric.Float64Histogram
	verbAttrs       sync.Map // verb name → []metric.RecordOption (see connAttrs)
	// Until spanlessUntil (monoNanos), requests that carry no trace start
	// no span: the tracer makes spans with nothing behind them
	// (startRequestSpan). Tests shorten spanlessRecheck.
	spanlessUntil   atomic.Int64
	spanlessRecheck time.Duration
	registration    metric.Registration
	key             telemetryKey // its provider and node (closedAwaiting)
	keyed           bool         // key is usable
	// final: the transport closed and every message has its outcome.
	// The counters stay registered until a collection has reported
	// their final figures (see registerObservables).
	final atomic.Bool
	// retired: the counters' unregistering is taken, by Close or by the
	// collection after it, whichever comes first; the other does not
	// wait for it (a collection calls the callback under the lock that
	// Unregister takes).
	retired atomic.Bool
	// collected: the counters' callback ran; something collects them.
	collected   atomic.Bool
	leaveKernel func() // ends this transport's share of the kernel counters' export
	stages      stageInstruments
	health      healthInstruments
}

func newTelemetry(t *Transport, mp metric.MeterProvider, tp trace.TracerProvider) (*telemetry, error) {
	// The node's own meter: transports that share a provider (several
	// nodes in one process) report as many scopes, told apart by the
	// node's ID (Prometheus: otel_scope_internode_node), where one scope
	// would add their counters up — and take a closed node's share back
	// out — and keep one node's gauges at random. The host-wide kernel
	// counters stay on the unattributed meter (joinKernelExport).
	m := mp.Meter(instrumentationName, metric.WithInstrumentationAttributes(attribute.String("internode.node", string(t.cfg.NodeID))))
	tel := &telemetry{
		tracer:          tp.Tracer(instrumentationName),
		propagator:      propagation.TraceContext{},
		spanlessRecheck: spanlessRecheck,
	}
	if tel.key, tel.keyed = keyFor(mp, t.cfg.NodeID); tel.keyed {
		replaceClosed(tel.key)
	}
	var err error
	if tel.batchMessages, err = m.Int64Histogram("internode.coalesce.batch_messages",
		metric.WithDescription("Messages per write on a connection"), metric.WithUnit("{message}"),
		metric.WithExplicitBucketBoundaries(batchBounds...)); err != nil {
		return nil, err
	}
	if tel.coalesceWait, err = m.Float64Histogram("internode.coalesce.wait",
		metric.WithDescription("Time a writer waited to coalesce before a write, as observed"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(coalesceWaitBounds...)); err != nil {
		return nil, err
	}
	if tel.requestDuration, err = m.Float64Histogram("internode.request.duration",
		metric.WithDescription("Request round trips, from Request to its response or error"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(requestDurationBounds...)); err != nil {
		return nil, err
	}
	if tel.registration, err = registerObservables(m, t, tel); err != nil {
		return nil, err
	}
	if tel.leaveKernel, err = joinKernelExport(mp); err != nil {
		_ = tel.registration.Unregister()
		return nil, err
	}
	if err = errors.Join(tel.stages.register(m, t), tel.health.register(m, t)); err != nil {
		for _, r := range []metric.Registration{tel.registration, tel.stages.registration, tel.health.registration} {
			if r != nil {
				_ = r.Unregister()
			}
		}
		tel.leaveKernel()
		return nil, err
	}
	return tel, nil
}

// Histogram bucket bounds. Consecutive bounds differ by at most 1.5×, so
// a quantile interpolated linearly inside a bucket, as Prometheus'
// histogram_quantile does, stays close to the exact value (within 20% for
// the log-normal spreads TestHistogramQuantiles records); each histogram
// series carries 24 to 46 bounds.
var (
	// requestDurationBounds: 50 µs (a loopback round trip) to 10 s.
	requestDurationBounds = decadeBounds(50e-6, 10)
	// stageWaitBounds: 5 µs (a handler that was free) to 10 s.
	stageWaitBounds = decadeBounds(5e-6, 10)
	// coalesceWaitBounds: 0 (writes that did not wait) and 2 µs to 1 s
	// (coalescing.WindowLimit).
	coalesceWaitBounds = append([]float64{0}, decadeBounds(2e-6, 1)...)
	// batchBounds: 1 to 4096 messages per write, at powers of two and
	// 1.5 times them.
	batchBounds = powerOfTwoBounds(4096)
)

// decadeSteps are the bounds within each power of ten.
var decadeSteps = [...]float64{1, 1.5, 2, 3, 4, 6, 8}

// decadeBounds returns lo, then decadeSteps scaled to every power of ten
// above lo, up to hi inclusive, each rounded to three significant digits
// so that the bounds print as written (0.00015, not
// 0.00015000000000000001).
func decadeBounds(lo, hi float64) []float64 {
	bounds := []float64{lo}
	for exp := int(math.Floor(math.Log10(lo))); ; exp++ {
		for _, step := range decadeSteps {
			b, _ := strconv.ParseFloat(strconv.FormatFloat(step*math.Pow10(exp), 'g', 3, 64), 64)
			if b > hi*(1+1e-9) {
				return bounds
			}
			if b > lo*(1+1e-9) {
				bounds = append(bounds, b)
			}
		}
	}
}

// powerOfTwoBounds returns 1, 2, 3, 4, 6, 8, 12 … up to hi, a power of
// two.
func powerOfTwoBounds(hi int) []float64 {
	bounds := []float64{1}
	for p := 2; p <= hi; p *= 2 {
		bounds = append(bounds, float64(p))
		if p*3/2 < hi {
			bounds = append(bounds, float64(p*3/2))
		}
	}
	return bounds
}

// observables are the instruments read from the transport's counters.
type observables struct {
	sent, received, bytesSent, bytesReceived, dropped metric.Int64ObservableCounter
	throttled, opened, failures, refused, badInput    metric.Int64ObservableCounter
	probes                                            metric.Int64ObservableCounter
	handlerErrors, remoteDropped                      metric.Int64ObservableCounter
	throttledTime                                     metric.Float64ObservableCounter
	pendingMessages, pendingBytes, sendPeak, recvPeak metric.Int64ObservableGauge
	certificateExpiry                                 metric.Int64ObservableGauge
	compressionBytes                                  metric.Int64ObservableCounter
	streams, streamBytes, files, fileBytes            metric.Int64ObservableCounter
}

// observableSet makes observable instruments on a meter and keeps their
// errors, to be checked once all are made.
type observableSet struct {
	m    metric.Meter
	errs []error
}

func (s *observableSet) counter(name, desc, unit string) metric.Int64ObservableCounter {
	c, err := s.m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
	s.errs = append(s.errs, err)
	return c
}

func (s *observableSet) gauge(name, desc, unit string) metric.Int64ObservableGauge {
	g, err := s.m.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
	s.errs = append(s.errs, err)
	return g
}

// seconds is a gauge of seconds.
func (s *observableSet) seconds(name, desc string) metric.Float64ObservableGauge {
	g, err := s.m.Float64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit("s"))
	s.errs = append(s.errs, err)
	return g
}

// err is the first error of the instruments made so far.
func (s *observableSet) err() error {
	for _, err := range s.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// closedAwaiting holds, by provider and node ID (telemetryKey), the
// telemetry of a closed transport whose counters wait for the collection
// that reports their final figures. A transport of the same node started
// on the same provider meanwhile reports the same series: had both
// callbacks observed them, that collection would have read their sum (a
// figure neither counted, followed by a fall that reads as a reset, or a
// negative delta). The new transport unregisters the closed one's
// counters instead, whose final figures are then lost: its series start
// again from the new transport's, a counter reset.
//
// It holds neither strongly: a provider shut down without a last
// collection, and dropped, goes with the closed transport's counters
// that its registration kept, as without this map. Entries whose
// telemetry went are pruned as others are added.
var closedAwaiting sync.Map // telemetryKey → weak.Pointer[telemetry]

// telemetryKey names the series a transport's counters report: its
// provider, by address, and its node ID, the attribute of its meter.
type telemetryKey struct {
	provider uintptr
	node     cluster.NodeID
}

// keyFor returns the key of node's counters on mp, and false when mp is
// not a pointer (a provider passed by value), which is then not tracked.
// An address that a provider freed since and another took is harmless:
// the telemetry it finds, if any is left, is of a provider no longer
// collected.
func keyFor(mp metric.MeterProvider, node cluster.NodeID) (telemetryKey, bool) {
	if mp == nil {
		return telemetryKey{}, false
	}
	v := reflect.ValueOf(mp)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return telemetryKey{}, false
	}
	return telemetryKey{v.Pointer(), node}, true
}

// awaitFinalCollection leaves the counters of a closed transport
// registered for the collection that reports their final figures, and
// known to a transport of the same node started on the same provider
// before it (closedAwaiting).
func (tel *telemetry) awaitFinalCollection() {
	if !tel.keyed {
		return
	}
	closedAwaiting.Range(func(k, v any) bool {
		if v.(weak.Pointer[telemetry]).Value() == nil {
			closedAwaiting.CompareAndDelete(k, v)
		}
		return true
	})
	me := weak.Make(tel)
	closedAwaiting.Store(tel.key, me)
	if tel.retired.Load() { // the collection came meanwhile
		closedAwaiting.CompareAndDelete(tel.key, me)
	}
}

// replaceClosed unregisters the counters of a closed transport of the
// same node on the same provider that still wait for their final
// collection (closedAwaiting).
func replaceClosed(key telemetryKey) {
	v, ok := closedAwaiting.LoadAndDelete(key)
	if !ok {
		return
	}
	if old := v.(weak.Pointer[telemetry]).Value(); old != nil && old.retired.CompareAndSwap(false, true) {
		_ = old.registration.Unregister()
	}
}

// registerObservables registers the counters, observed from t. Once t
// has closed (tel.final), the collection that reports their final
// figures unregisters them: a callback unregistered is not called, and
// its series are not reported at all, so one unregistered as Close
// began lost what Close itself counted (the messages it failed), and all
// that was counted since the collection before, for every exporter.
// With several readers on the provider, the first to collect after Close
// has them.
func registerObservables(m metric.Meter, t *Transport, tel *telemetry) (metric.Registration, error) {
	var o observables
	set := observableSet{m: m}
	counter, gauge := set.counter, set.gauge
	o.sent = counter("internode.messages.sent", "Messages written to sockets", "{message}")
	o.received = counter("internode.messages.received", "Messages handed to handlers or waiting requests", "{message}")
	o.bytesSent = counter("internode.bytes.sent", "Encoded message bytes written", "By")
	o.bytesReceived = counter("internode.bytes.received", "Payload bytes received", "By")
	o.dropped = counter("internode.messages.dropped", "Messages that did not reach their handler, by reason and direction", "{message}")
	o.handlerErrors = counter("internode.messages.handler_errors", "One-way messages received whose handler returned an error or panicked", "{message}")
	o.remoteDropped = counter("internode.messages.remote_dropped", "Messages the peer reported it dropped and no call was waiting for (one-way messages it rejected, requests whose caller had given up), by reason", "{message}")
	o.throttled = counter("internode.inbound.throttled", "Times reading a connection paused for want of inbound capacity", "{pause}")
	o.opened = counter("internode.connections.opened", "Outbound connections established", "{connection}")
	o.failures = counter("internode.connection.failures", "Outbound dial or handshake failures", "{failure}")
	o.refused = counter("internode.connections.refused", "Inbound connections refused, by reason", "{connection}")
	o.probes = counter("internode.connections.probes", "Inbound connections closed before sending a byte (port probes, health checks): neither refused nor bad input", "{connection}")
	o.badInput = counter("internode.connections.bad_input", "Inbound connections closed for what they sent, by reason", "{connection}")
	tt, err := m.Float64ObservableCounter("internode.inbound.throttled_time", metric.WithDescription("Time connections spent paused"), metric.WithUnit("s"))
	set.errs = append(set.errs, err)
	o.throttledTime = tt
	o.pendingMessages = gauge("internode.queue.pending_messages", "Messages queued for writing", "{message}")
	o.pendingBytes = gauge("internode.queue.pending_bytes", "Bytes queued or being written", "By")
	o.sendPeak = gauge("internode.socket.send_queue_peak_bytes", "Peak bytes in the socket send queue (written, not yet acknowledged) since the last collection, measured after every write while the queue builds up, after sampled writes otherwise, and at each collection", "By")
	o.recvPeak = gauge("internode.socket.recv_queue_peak_bytes", "Peak unread bytes in the socket receive queue since the last collection, measured after every read while data waits, after sampled reads otherwise, while reading pauses, and at each collection", "By")
	o.compressionBytes = counter("internode.compression.bytes", "Payload bytes of the batch frames sent compressed, before (stage=uncompressed) and after (stage=compressed) compression", "By")
	o.streams = counter("internode.streams", "Streams opened by this node (outcome=opened or open_failed, one per OpenStream) and by its peers (outcome=accepted or refused)", "{stream}")
	o.streamBytes = counter("internode.streams.bytes", "Bytes written to (direction=sent) and read from (direction=received) streams", "By")
	o.files = counter("internode.files", "File transfers sent (outcome=sent or send_failed, one per SendFile) and received (outcome=received or receive_failed)", "{transfer}")
	o.fileBytes = counter("internode.files.bytes", "Bytes of the file transfers completed and verified, by direction (sent, received)", "By")
	o.certificateExpiry = gauge("internode.tls.certificate.expiry", "Seconds until this node's own TLS certificate expires, negative once it has (TLS only)", "s")
	if err := set.err(); err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		tel.collected.Store(true)
		final := tel.final.Load() // read first: what observe reads is final then
		t.observe(obs, &o)
		if final {
			// Not here: the provider calls this under the lock that
			// Unregister takes.
			if tel.retired.CompareAndSwap(false, true) {
				closedAwaiting.CompareAndDelete(tel.key, weak.Make(tel))
				go func() { _ = tel.registration.Unregister() }()
			}
		}
		return nil
	}, o.sent, o.received, o.bytesSent, o.bytesReceived, o.dropped, o.handlerErrors, o.remoteDropped,
		o.throttled, o.opened, o.failures, o.refused, o.probes, o.badInput, o.throttledTime, o.pendingMessages, o.pendingBytes, o.sendPeak, o.recvPeak,
		o.certificateExpiry, o.compressionBytes, o.streams, o.streamBytes, o.files, o.fileBytes)
}

// observe reports every counter once per collection.
func (t *Transport) observe(obs metric.Observer, o *observables) {
	t.measureQueues()
	st := t.Stats()
	for _, c := range st.Conns {
		conn := metric.WithAttributes(attribute.String("peer", string(c.Peer)), attribute.String("lane", c.Lane.String()))
		obs.ObserveInt64(o.sent, int64(c.MessagesSent), conn)
		obs.ObserveInt64(o.received, int64(c.MessagesReceived), conn)
		obs.ObserveInt64(o.bytesSent, int64(c.BytesSent), conn)
		obs.ObserveInt64(o.bytesReceived, int64(c.BytesReceived), conn)
		obs.ObserveInt64(o.handlerErrors, int64(c.HandlerErrors), conn)
		obs.ObserveInt64(o.throttled, int64(c.Throttled), conn)
		obs.ObserveFloat64(o.throttledTime, c.ThrottledTime.Seconds(), conn)
		obs.ObserveInt64(o.opened, int64(c.Connects), conn)
		obs.ObserveInt64(o.failures, int64(c.ConnectFailures), conn)
		obs.ObserveInt64(o.pendingMessages, int64(c.PendingMessages), conn)
		obs.ObserveInt64(o.pendingBytes, int64(c.PendingBytes), conn)
		if c.CompressedFrames > 0 {
			for _, stage := range []struct {
				name  string
				bytes uint64
			}{{"uncompressed", c.CompressionIn}, {"compressed", c.CompressionOut}} {
				obs.ObserveInt64(o.compressionBytes, int64(stage.bytes), metric.WithAttributes(attribute.String("peer", string(c.Peer)),
					attribute.String("lane", c.Lane.String()), attribute.String("stage", stage.name)))
			}
		}
		if p := t.peerStats(c.Peer); p != nil && c.QueuesMeasured { // no series for what was never measured
			obs.ObserveInt64(o.sendPeak, p.sendPeak[c.Lane].TakeAndReset(), conn)
			obs.ObserveInt64(o.recvPeak, p.recvPeak[c.Lane].TakeAndReset(), conn)
		}
		for r := range NumReasons {
			for _, d := range []struct {
				dir string
				n   uint64
			}{{"out", c.Dropped[r]}, {"in", c.DroppedInbound[r]}} {
				if d.n > 0 {
					obs.ObserveInt64(o.dropped, int64(d.n), metric.WithAttributes(
						attribute.String("peer", string(c.Peer)), attribute.String("lane", c.Lane.String()),
						attribute.String("reason", Reason(r).String()), attribute.String("direction", d.dir)))
				}
			}
			if n := c.RemoteDropped[r]; n > 0 {
				obs.ObserveInt64(o.remoteDropped, int64(n), metric.WithAttributes(
					attribute.String("peer", string(c.Peer)), attribute.String("lane", c.Lane.String()),
					attribute.String("reason", Reason(r).String())))
			}
		}
	}
	for r := range NumRefusals {
		if n := st.Refusals[r]; n > 0 {
			obs.ObserveInt64(o.refused, int64(n), metric.WithAttributes(attribute.String("reason", Refusal(r).String())))
		}
	}
	if st.InboundProbes > 0 {
		obs.ObserveInt64(o.probes, int64(st.InboundProbes))
	}
	for b := range numBadInputs {
		if n := st.BadInput[b]; n > 0 {
			obs.ObserveInt64(o.badInput, int64(n), metric.WithAttributes(attribute.String("reason", b.String())))
		}
	}
	observeNonZero(obs, o.streams, "outcome", map[string]uint64{"opened": st.StreamsOpened, "open_failed": st.StreamOpenFailures,
		"accepted": st.StreamsAccepted, "refused": st.StreamsRefused})
	observeNonZero(obs, o.streamBytes, "direction", map[string]uint64{"sent": st.StreamBytesSent, "received": st.StreamBytesReceived})
	observeNonZero(obs, o.files, "outcome", map[string]uint64{"sent": st.FilesSent, "send_failed": st.FileSendFailures,
		"received": st.FilesReceived, "receive_failed": st.FileReceiveFailures})
	observeNonZero(obs, o.fileBytes, "direction", map[string]uint64{"sent": st.FileBytesSent, "received": st.FileBytesReceived})
	if left, ok := t.certificateExpiry(); ok && !t.closing.Load() { // a closed node's certificate serves no one
		obs.ObserveInt64(o.certificateExpiry, int64(left/time.Second))
	}
}

// observeNonZero reports each count of c that is not zero, under the
// attribute key set to its name: a node that never used streams or files
// reports no series for them.
func observeNonZero(obs metric.Observer, c metric.Int64ObservableCounter, key string, counts map[string]uint64) {
	for name, n := range counts {
		if n > 0 {
			obs.ObserveInt64(c, int64(n), metric.WithAttributes(attribute.String(key, name)))
		}
	}
}

// measureQueues reads the send queue of every lane's connection, and
// the receive and send queues (its responses') of every accepted one, as
// the metrics are collected.
// The writer measures after its writes and the reader after its reads: a
// write blocked on a peer that stopped reading has not ended, and a
// reader blocked (in an Inline handler, or handing a part to a
// ReaderHandler) reads nothing, so the peak carried the reading taken
// before — however little that was — for as long as the block lasted (a
// blocked write until Timeouts.Write cut its connection, whose queue then
// read empty). The full queue of a stalled connection, what the peak is
// for, went unreported. These readings count in the interval they are
// taken in (Peak.Raise): one taken as the connection closed must not
// outlive it.
func (t *Transport) measureQueues() {
	if !t.measuring() {
		return
	}
	for _, p := range *t.peersView.Load() {
		for lane := range p.lanes {
			c := p.lanes[lane].Load()
			if c == nil {
				continue
			}
			lc := c.live.Load()
			if lc == nil || lc.probe == nil {
				continue
			}
			if n, err := lc.probe.SendQueue(); err == nil {
				p.sendPeak[lane].Raise(int64(n))
				p.sendMax[lane].Raise(int64(n))
				p.measured(routing.Lane(lane))
			}
		}
	}
	t.inboundMu.Lock()
	accepted := make([]*inConn, 0, len(t.inConns))
	for ic := range t.inConns {
		if ic.probe != nil {
			accepted = append(accepted, ic)
		}
	}
	t.inboundMu.Unlock()
	for _, ic := range accepted {
		if n, err := ic.probe.RecvQueue(); err == nil {
			ic.peer.recvPeak[ic.lane].Raise(int64(n))
			ic.peer.recvMax[ic.lane].Raise(int64(n))
			ic.peer.measured(ic.lane)
		}
		// The responses it owes the peer go back on it: a write of
		// theirs blocked on a peer that stopped reading shows here.
		if n, err := ic.probe.SendQueue(); err == nil {
			ic.peer.sendPeak[ic.lane].Raise(int64(n))
			ic.peer.sendMax[ic.lane].Raise(int64(n))
		}
	}
}

// probeFor returns a queue-depth probe for conn's TCP socket, or nil when
// conn has no socket to ask. It serves the socket measurement, unless
// that is off (Telemetry.DisableSocketMeasurement, see measuring), and
// the writes from the caller's goroutine (outConn.sendQueueLow,
// inConn.backQueueLow) either way.
func (t *Transport) probeFor(conn net.Conn) *sockstat.Probe {
	c, ok := socketOf(conn).(syscall.Conn)
	if !ok {
		return nil
	}
	p, err := sockstat.NewProbe(c)
	if err != nil {
		return nil
	}
	return p
}

// measuring reports whether socket queue depths are measured.
func (t *Transport) measuring() bool { return !t.cfg.Telemetry.DisableSocketMeasurement }

// peerStats returns the peer's state, if any, without creating it.
func (t *Transport) peerStats(id cluster.NodeID) *peer { return (*t.peersView.Load())[id] }

// laneAttrs are the attribute sets of one lane with one peer, computed
// once: the peer's own and the strangers' one. Peers that are not members
// share one label, so made-up node IDs cannot multiply the metric series.
//
// Each is a slice of one, made once: passed on as it is, it costs a
// Record no allocation, where a lone option would be put in a new slice
// each time.
type laneAttrs struct{ own, strangers []metric.RecordOption }

func (tel *telemetry) connAttrs(p *peer, lane routing.Lane) laneAttrs {
	set := func(id cluster.NodeID) []metric.RecordOption {
		return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("peer", string(id)), attribute.String("lane", lane.String())))}
	}
	return laneAttrs{own: set(p.id), strangers: set(StrangersPeer)}
}

// of returns the set for p as it stands now: a lane built on a stranger's
// entry outlives its promotion (promote), after which Stats counts its
// writes under the peer's ID, and so must the histograms.
func (a *laneAttrs) of(p *peer) []metric.RecordOption {
	if p.member.Load() {
		return a.own
	}
	return a.strangers
}

// recordFlush records one write's batch size and coalescing wait.
func (tel *telemetry) recordFlush(attrs []metric.RecordOption, messages int, waited time.Duration) {
	ctx := context.Background()
	tel.batchMessages.Record(ctx, int64(messages), attrs...)
	tel.coalesceWait.Record(ctx, waited.Seconds(), attrs...)
}

// recordRequest records a request's duration under its verb's name.
func (tel *telemetry) recordRequest(verb string, d time.Duration) {
	tel.requestDuration.Record(context.Background(), d.Seconds(), verbOptions(&tel.verbAttrs, verb)...)
}

// verbOptions returns the record options of verb's metrics from cache,
// made once per verb (see connAttrs).
func verbOptions(cache *sync.Map, verb string) []metric.RecordOption {
	if o, ok := cache.Load(verb); ok {
		return o.([]metric.RecordOption)
	}
	o, _ := cache.LoadOrStore(verb, []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("verb", verb)))})
	return o.([]metric.RecordOption)
}

// startRequestSpan opens the client span of a request and returns the
// parameter block that carries its context to the peer (nil when there is
// no span to carry). mono is the time now (monoNanos).
//
// A tracer with nothing behind it (no SDK installed: otel's global
// provider before otel.SetTracerProvider, or a no-op one) makes spans
// that record nothing and carry no trace, for 7 allocations a request:
// 15% of the bench's reqresp rate. Once Start has made one, requests
// whose context carries no trace skip it for spanlessRecheck, then try
// again, so a provider installed later is seen within that time. A
// request that carries a trace always starts its span, which passes the
// trace on to the peer.
func (tel *telemetry) startRequestSpan(ctx context.Context, to cluster.NodeID, verb string, mono int64) (context.Context, trace.Span, []byte) {
	if mono < tel.spanlessUntil.Load() && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil, nil
	}
	ctx, span := tel.tracer.Start(ctx, "internode.request", clientSpan,
		trace.WithAttributes(attribute.String("internode.peer", string(to)), attribute.String("internode.verb", verb)))
	if !span.IsRecording() && !span.SpanContext().IsValid() {
		tel.spanlessUntil.Store(mono + int64(tel.spanlessRecheck))
	}
	return ctx, span, tel.traceParams(ctx)
}

// spanlessRecheck is how long requests skip their spans once the tracer
// made one with nothing behind it (startRequestSpan).
const spanlessRecheck = time.Second

// The span kinds, made once: an option made per call is an allocation.
var (
	clientSpan = trace.WithSpanKind(trace.SpanKindClient)
	serverSpan = trace.WithSpanKind(trace.SpanKindServer)
)

// traceParams encodes ctx's span context (W3C traceparent, tracestate) as
// a message parameter block, or nil. The block fits the wire format's
// bound (wire.MaxParamsSize), which a valid tracestate may exceed: its
// members are then dropped from the end, as W3C lets a vendor truncate
// it, until it fits; the trace itself (traceparent) always goes on.
func (tel *telemetry) traceParams(ctx context.Context) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	var carrier paramsCarrier
	tel.propagator.Inject(ctx, &carrier)
	for ts := sc.TraceState(); len(carrier.block) > wire.MaxParamsSize && ts.Len() > 0; {
		var last string
		ts.Walk(func(key, _ string) bool { last = key; return true })
		ts = ts.Delete(last)
		carrier = paramsCarrier{}
		tel.propagator.Inject(trace.ContextWithSpanContext(ctx, sc.WithTraceState(ts)), &carrier)
	}
	return carrier.block
}

// handlerSpan continues a remote trace for a handler, when the message
// carried one.
func (tel *telemetry) handlerSpan(ctx context.Context, params []byte, from cluster.NodeID, verb string) (context.Context, trace.Span) {
	if len(params) == 0 {
		return ctx, nil
	}
	ctx = tel.propagator.Extract(ctx, &paramsCarrier{block: params})
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return tel.tracer.Start(ctx, "internode.handle", serverSpan,
		trace.WithAttributes(attribute.String("internode.peer", string(from)), attribute.String("internode.verb", verb)))
}

// endSpan ends a span, recording err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// paramsCarrier adapts a message parameter block to the propagation API.
type paramsCarrier struct{ block []byte }

func (c *paramsCarrier) Get(key string) string {
	v, _ := wire.Param(c.block, key)
	return string(v)
}

func (c *paramsCarrier) Set(key, value string) {
	c.block = wire.AppendParam(c.block, key, []byte(value))
}

func (c *paramsCarrier) Keys() []string {
	var keys []string
	_ = wire.RangeParams(c.block, func(k, _ []byte) bool {
		keys = append(keys, string(k))
		return true
	})
	return keys
}
