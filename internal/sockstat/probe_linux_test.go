package sockstat_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/internode/internode/internal/sockstat"
)

// tcpPair returns both ends of a loopback TCP connection, closed at cleanup.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = ln.AcceptTCP()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

func newProbe(t testing.TB, c *net.TCPConn) *sockstat.Probe {
	t.Helper()
	p, err := sockstat.NewProbe(c)
	require.NoError(t, err)
	return p
}

func queue(t *testing.T, f func() (int, error)) int {
	t.Helper()
	n, err := f()
	require.NoError(t, err)
	return n
}

func TestQueuesGrowWhenReceiverDoesNotRead(t *testing.T) {
	client, server := tcpPair(t)
	// A small fixed receive buffer fills quickly and turns off autotuning,
	// so the rest of the data must wait in the sender's queue.
	require.NoError(t, sockstat.SetBuffers(server, 0, 64<<10))
	sender, receiver := newProbe(t, client), newProbe(t, server)
	require.Zero(t, queue(t, sender.SendQueue))
	require.Zero(t, queue(t, receiver.RecvQueue))

	const total = 8 << 20
	written := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, total))
		written <- err
	}()

	var sendPeak, recvPeak sockstat.Peak
	require.Eventually(t, func() bool {
		n := queue(t, sender.SendQueue)
		sendPeak.Observe(int64(n))
		return n > 0
	}, 10*time.Second, time.Millisecond, "the sender's queue holds what the receiver's window cannot")
	require.Eventually(t, func() bool {
		n := queue(t, receiver.RecvQueue)
		recvPeak.Observe(int64(n))
		return n > 0
	}, 10*time.Second, time.Millisecond, "the receiver's queue holds what it has not read")
	require.Positive(t, sendPeak.TakeAndReset())
	require.Positive(t, recvPeak.TakeAndReset())

	info, err := sender.Info()
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State, "established")
	require.Positive(t, info.SndCwnd)
	require.Positive(t, info.SndMSS)
	require.True(t, info.HasNotSentBytes, "kernels since 4.6 report tcpi_notsent_bytes")

	_, err = io.ReadFull(server, make([]byte, total))
	require.NoError(t, err)
	require.NoError(t, <-written)
	require.Zero(t, queue(t, receiver.RecvQueue), "everything was read")
	require.Eventually(t, func() bool { return queue(t, sender.SendQueue) == 0 },
		10*time.Second, time.Millisecond, "everything is acknowledged")
	info, err = sender.Info()
	require.NoError(t, err)
	require.Zero(t, info.NotSentBytes)
	require.Zero(t, info.Unacked)
}

func TestRawConnFunctions(t *testing.T) {
	client, server := tcpPair(t)
	raw, err := server.SyscallConn()
	require.NoError(t, err)
	_, err = client.Write([]byte("hello"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := sockstat.RecvQueue(raw)
		require.NoError(t, err)
		return n == 5
	}, 10*time.Second, time.Millisecond)
	n, err := sockstat.SendQueue(raw)
	require.NoError(t, err)
	require.Zero(t, n)
	info, err := sockstat.Info(raw)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State)
}

func TestProbeAfterClose(t *testing.T) {
	client, _ := tcpPair(t)
	p := newProbe(t, client)
	require.NoError(t, client.Close())
	_, err := p.SendQueue()
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = p.RecvQueue()
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = p.Info()
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestProbeDoesNotAllocate(t *testing.T) {
	client, server := tcpPair(t)
	p := newProbe(t, client)
	raw, err := server.SyscallConn()
	require.NoError(t, err)
	calls := map[string]func(){
		"Probe.SendQueue": func() { _, _ = p.SendQueue() },
		"Probe.RecvQueue": func() { _, _ = p.RecvQueue() },
		"Probe.Info":      func() { _, _ = p.Info() },
	}
	if !raceEnabled { // the package-level functions borrow from a sync.Pool
		calls["SendQueue"] = func() { _, _ = sockstat.SendQueue(raw) }
		calls["RecvQueue"] = func() { _, _ = sockstat.RecvQueue(raw) }
		calls["Info"] = func() { _, _ = sockstat.Info(raw) }
	}
	for name, f := range calls {
		require.Zero(t, testing.AllocsPerRun(1000, f), name)
	}
}

func TestProbeConcurrentUse(t *testing.T) {
	client, _ := tcpPair(t)
	p := newProbe(t, client)
	done := make(chan struct{})
	for _, f := range []func() error{
		func() error { _, err := p.SendQueue(); return err },
		func() error { _, err := p.RecvQueue(); return err },
		func() error { _, err := p.Info(); return err },
		func() error { _, err := p.SendQueue(); return err },
	} {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				if err := f(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func noop(uintptr) {}

func BenchmarkProbe(b *testing.B) {
	client, _ := tcpPair(b)
	p := newProbe(b, client)
	raw, err := client.SyscallConn()
	require.NoError(b, err)
	for _, bc := range []struct {
		name string
		f    func() error
	}{
		{"Probe.SendQueue", func() error { _, err := p.SendQueue(); return err }},
		{"Probe.RecvQueue", func() error { _, err := p.RecvQueue(); return err }},
		{"Probe.Info", func() error { _, err := p.Info(); return err }},
		{"SendQueue(RawConn)", func() error { _, err := sockstat.SendQueue(raw); return err }},
		// Baselines: RawConn.Control alone, and x/sys's allocating TCP_INFO.
		{"baseline/Control(noop)", func() error { return raw.Control(noop) }},
		{"baseline/unix.GetsockoptTCPInfo", func() error {
			var err error
			if cerr := raw.Control(func(fd uintptr) {
				_, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			}); cerr != nil {
				return cerr
			}
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
