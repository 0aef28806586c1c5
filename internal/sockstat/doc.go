// Package sockstat measures a TCP socket's kernel queues at the moment the
// caller asks, and sets the socket options that size them.
//
// "Measuring is better than sampling": a queue depth polled once per export
// interval misses the spikes that rise and fall between polls. The transport
// instead reads the depth where data is queued and dequeued — after a flush
// (SendQueue) and after a read (RecvQueue) — and feeds each reading to a
// Peak, which the metrics exporter drains once per interval. A Sampler
// picks which flushes and reads are measured: all of them while a queue
// builds up or a write is slow, one in 16 while the socket is quiet, so
// that sparse traffic does not pay an ioctl per message and a peak is
// still caught.
//
// How to use it:
//
//  1. When a connection is established, build one Probe for it with
//     NewProbe. A *net.TCPConn is a syscall.Conn; for a *tls.Conn pass
//     tlsConn.NetConn().(syscall.Conn). Keep the Probe with the connection:
//     building it allocates, calling it does not.
//  2. After each flush that the connection's Sampler says is Due, call
//     Probe.SendQueue, Record the result on the Sampler and Observe it on the
//     peer's send Peak; likewise after reads with Probe.RecvQueue and the
//     receive Peak. Each call is one ioctl(2).
//  3. The exporter calls Peak.TakeAndReset once per interval, and Probe.Info
//     when it wants round-trip time, congestion window and retransmissions.
//     It may also read a queue itself and Peak.Raise the reading: a write
//     blocked on a full send buffer makes no reading until it ends.
//  4. Once the connection is closed, the Probe's methods return an error that
//     satisfies errors.Is(err, net.ErrClosed); drop the Probe.
//
// Socket buffer sizes are set with SetBuffers (on a connected socket) or
// SetBuffersRaw (from net.Dialer.Control or net.ListenConfig.Control: tcp(7)
// says sizes must be set before connect or listen to take full effect, and
// accepted sockets inherit the listener's). Setting a size turns off the
// kernel's receive-buffer autotuning for that socket; 0 leaves a size, and
// autotuning, alone. Buffers reads the sizes back: Linux doubles what was set
// to leave room for its bookkeeping, and caps it at net.core.rmem_max and
// net.core.wmem_max.
//
// Everything except Peak and SetBuffers is implemented for Linux only; on
// other systems those calls return an error wrapping ErrUnsupported.
package sockstat
