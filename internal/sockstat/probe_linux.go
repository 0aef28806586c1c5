package sockstat

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe reads one socket's queue depths and TCP_INFO without allocating.
// RawConn.Control takes a func(fd uintptr); a closure made per call would be
// allocated per call, so each query owns its result fields and a method value
// made once in NewProbe. TCP_INFO's buffer, larger than the rest of a Probe
// and seldom read, is borrowed from a pool for each Info instead: every
// connection keeps a Probe.
//
// A Probe is safe for concurrent use: the writer loop may call SendQueue
// while the reader loop calls RecvQueue. Calls of the same method serialize.
type Probe struct {
	raw  syscall.RawConn
	send queueQuery
	recv queueQuery
}

// NewProbe makes a Probe for c, usually a *net.TCPConn; for a *tls.Conn pass
// its NetConn(). It fails if c cannot give a syscall.RawConn.
func NewProbe(c syscall.Conn) (*Probe, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sockstat: %w", err)
	}
	return newProbe(raw), nil
}

func newProbe(raw syscall.RawConn) *Probe {
	p := &Probe{raw: raw}
	p.send.init(unix.SIOCOUTQ, "SIOCOUTQ")
	p.recv.init(unix.SIOCINQ, "SIOCINQ")
	return p
}

// SendQueue returns the bytes in the socket's send queue: written by the
// application and not yet acknowledged by the peer, whether sent or not
// (ioctl SIOCOUTQ). It grows when the network or the peer cannot keep up.
func (p *Probe) SendQueue() (int, error) { return p.send.query(p.raw) }

// RecvQueue returns the bytes received and waiting for the application to
// read them (ioctl SIOCINQ). It grows when this process reads too slowly.
func (p *Probe) RecvQueue() (int, error) { return p.recv.query(p.raw) }

// Info returns the socket's TCP_INFO fields that TCPInfo describes.
func (p *Probe) Info() (TCPInfo, error) {
	i := infoQueries.Get().(*infoQuery)
	defer infoQueries.Put(i)
	return i.query(p.raw)
}

// queueQuery is one ioctl that reads an int, with its result.
type queueQuery struct {
	mu      sync.Mutex
	req     uint
	name    string
	control func(fd uintptr) // q.read, made once
	n       int
	err     error
}

func (q *queueQuery) init(req uint, name string) {
	q.req, q.name = req, name
	q.control = q.read
}

func (q *queueQuery) read(fd uintptr) { q.n, q.err = unix.IoctlGetInt(int(fd), q.req) }

func (q *queueQuery) query(raw syscall.RawConn) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := raw.Control(q.control); err != nil {
		return 0, fmt.Errorf("sockstat: %s: %w", q.name, err)
	}
	if q.err != nil {
		return 0, fmt.Errorf("sockstat: %s: %w", q.name, q.err)
	}
	return q.n, nil
}

// infoQuery is getsockopt(TCP_INFO) into a buffer it owns, because
// unix.GetsockoptTCPInfo allocates its result; one Info at a time has it
// (infoQueries).
type infoQuery struct {
	control func(fd uintptr) // i.read, made once
	buf     unix.TCPInfo
	length  uint32 // the bytes of buf the kernel filled
	errno   syscall.Errno
}

// notSentEnd is how many bytes of TCP_INFO a kernel must fill to report
// tcpi_notsent_bytes.
const notSentEnd = uint32(unsafe.Offsetof(unix.TCPInfo{}.Notsent_bytes) + unsafe.Sizeof(unix.TCPInfo{}.Notsent_bytes))

func (i *infoQuery) read(fd uintptr) {
	i.buf = unix.TCPInfo{}
	i.length = uint32(unsafe.Sizeof(i.buf))
	_, _, i.errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&i.buf)), uintptr(unsafe.Pointer(&i.length)), 0)
}

// infoQueries lends infoQuery buffers to Probe.Info.
var infoQueries = sync.Pool{New: func() any {
	i := new(infoQuery)
	i.control = i.read
	return i
}}

func (i *infoQuery) query(raw syscall.RawConn) (TCPInfo, error) {
	if err := raw.Control(i.control); err != nil {
		return TCPInfo{}, fmt.Errorf("sockstat: TCP_INFO: %w", err)
	}
	if i.errno != 0 {
		return TCPInfo{}, fmt.Errorf("sockstat: TCP_INFO: %w", i.errno)
	}
	b := &i.buf
	return TCPInfo{
		State:           b.State,
		RTT:             time.Duration(b.Rtt) * time.Microsecond,
		RTTVar:          time.Duration(b.Rttvar) * time.Microsecond,
		SndCwnd:         b.Snd_cwnd,
		SndMSS:          b.Snd_mss,
		Unacked:         b.Unacked,
		Lost:            b.Lost,
		TotalRetrans:    b.Total_retrans,
		RcvSpace:        b.Rcv_space,
		NotSentBytes:    b.Notsent_bytes,
		HasNotSentBytes: i.length >= notSentEnd,
	}, nil
}

// probes lends Probes to the package-level functions, so that they too run
// without allocating once the pool is warm.
var probes = sync.Pool{New: func() any { return newProbe(nil) }}

func withProbe[T any](c syscall.RawConn, f func(*Probe) (T, error)) (T, error) {
	p := probes.Get().(*Probe)
	p.raw = c
	v, err := f(p)
	p.raw = nil
	probes.Put(p)
	return v, err
}

// SendQueue is Probe.SendQueue for a RawConn; it does not allocate when c is
// obtained once and reused (each SyscallConn call allocates).
func SendQueue(c syscall.RawConn) (int, error) { return withProbe(c, (*Probe).SendQueue) }

// RecvQueue is Probe.RecvQueue for a RawConn; see SendQueue.
func RecvQueue(c syscall.RawConn) (int, error) { return withProbe(c, (*Probe).RecvQueue) }

// Info is Probe.Info for a RawConn; see SendQueue.
func Info(c syscall.RawConn) (TCPInfo, error) { return withProbe(c, (*Probe).Info) }
