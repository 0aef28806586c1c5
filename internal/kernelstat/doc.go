// Package kernelstat reads the kernel counters that show whether the network
// stack, rather than the application, is falling behind:
//
//   - /proc/net/netstat, TcpExt: TCPRcvCollapsed (segments merged in a receive
//     queue that ran short of buffer space), PruneCalled, RcvPruned and
//     OfoPruned (queues pruned, and data dropped, because the socket buffer
//     overran). Collapsing costs CPU; pruning loses packets. Both mean
//     receive buffers too small for the traffic, or readers too slow.
//   - /proc/net/softnet_stat, summed over CPUs: packets processed, packets
//     dropped because the backlog was full, and time squeezes (the softirq
//     ran out of budget or time with packets still waiting).
//
// The counters are cumulative since boot and machine-wide (netstat is per
// network namespace), so they are exported as monotonic counters and read
// as rates: what matters is whether they grow while the transport is busy.
//
// How to use it: call Read from a metrics callback, once per export
// interval; it reads two small files with github.com/prometheus/procfs
// (BenchmarkRead: reading the files, which the kernel generates on each
// read, is about two thirds of the cost). Read is implemented for Linux only; elsewhere it returns an
// error wrapping ErrUnsupported.
//
// softnet_stat counters are 32-bit per CPU and wrap; a sum that goes down
// has wrapped on some CPU, which a monotonic-counter exporter reports as a
// reset.
package kernelstat
