package transport

import (
	"context"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel/metric"

	"github.com/internode/internode/internal/kernelstat"
)

// The internode.kernel.* counters are host-wide (per network namespace),
// not per transport: transports that share a MeterProvider share one
// registration of them, so a process that runs several nodes exports each
// counter once per MeterProvider, not once per node. The registration
// lives while any transport using that provider is open.
var kernelExports = struct {
	sync.Mutex
	byProvider map[metric.MeterProvider]*kernelExport
}{byProvider: map[metric.MeterProvider]*kernelExport{}}

// readKernelCounters reads the counters; tests replace it.
var readKernelCounters = kernelstat.Read

// kernelExport is one MeterProvider's registration of the kernel
// counters and the number of open transports that use it.
type kernelExport struct {
	users        int
	registration metric.Registration
}

// joinKernelExport makes sure mp exports the kernel counters and returns
// the function that gives up this transport's share; the last one to
// leave unregisters them. leave is safe to call more than once.
func joinKernelExport(mp metric.MeterProvider) (leave func(), err error) {
	if !reflect.ValueOf(mp).Comparable() {
		// A provider that cannot be a map key cannot be shared: this
		// transport registers the counters for itself.
		reg, err := registerKernelCounters(mp.Meter(instrumentationName))
		if err != nil {
			return nil, err
		}
		return sync.OnceFunc(func() { _ = reg.Unregister() }), nil
	}
	kernelExports.Lock()
	defer kernelExports.Unlock()
	export := kernelExports.byProvider[mp]
	if export == nil {
		reg, err := registerKernelCounters(mp.Meter(instrumentationName))
		if err != nil {
			return nil, err
		}
		export = &kernelExport{registration: reg}
		kernelExports.byProvider[mp] = export
	}
	export.users++
	return sync.OnceFunc(func() {
		kernelExports.Lock()
		defer kernelExports.Unlock()
		if export.users--; export.users == 0 {
			_ = export.registration.Unregister()
			delete(kernelExports.byProvider, mp)
		}
	}), nil
}

// registerKernelCounters registers the kernel counters on m, read from
// /proc once per collection.
func registerKernelCounters(m metric.Meter) (metric.Registration, error) {
	set := observableSet{m: m}
	counter := set.counter
	collapsed := counter("internode.kernel.tcp_rcv_collapsed", "TcpExt TCPRcvCollapsed: receive buffers collapsed (/proc/net/netstat), host-wide", "{event}")
	pruned := counter("internode.kernel.tcp_rcv_pruned", "TcpExt RcvPruned: packets dropped after receive-queue pruning, host-wide", "{packet}")
	ofoPruned := counter("internode.kernel.tcp_ofo_pruned", "TcpExt OfoPruned: out-of-order queue pruned, host-wide", "{event}")
	timeSqueeze := counter("internode.kernel.softnet_time_squeeze", "softnet_stat time_squeeze, all CPUs", "{event}")
	softDropped := counter("internode.kernel.softnet_dropped", "softnet_stat dropped, all CPUs", "{packet}")
	if err := set.err(); err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		k, err := readKernelCounters()
		if err != nil {
			return nil // not Linux, or no /proc: nothing to report
		}
		obs.ObserveInt64(collapsed, int64(k.RcvCollapsed))
		obs.ObserveInt64(pruned, int64(k.RcvPruned))
		obs.ObserveInt64(ofoPruned, int64(k.OfoPruned))
		obs.ObserveInt64(timeSqueeze, int64(k.SoftnetTimeSqueeze))
		obs.ObserveInt64(softDropped, int64(k.SoftnetDropped))
		return nil
	}, collapsed, pruned, ofoPruned, timeSqueeze, softDropped)
}
