package transport

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readWaker is the process's epoll set of urgent and small lane sockets,
// every transport's (see wake.go): the processors that a bulk transfer
// keeps busy are the whole process's, whichever transport it belongs to.
// Like the runtime's own poller, it lives as long as the process. Its
// methods do nothing on a nil readWaker.
type readWaker struct {
	ep    int
	mu    sync.Mutex // guards next and conns
	next  uint64
	conns map[uint64]*wakeConn
	// count is len(conns): poll skips the system call while it is 0.
	count atomic.Int32
}

var (
	processWaker     *readWaker
	processWakerOnce sync.Once
)

// theReadWaker returns the process's set, or nil when the system gives
// none.
func theReadWaker() *readWaker {
	processWakerOnce.Do(func() {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err == nil {
			processWaker = &readWaker{ep: ep, conns: make(map[uint64]*wakeConn)}
		}
	})
	return processWaker
}

// epollID is the event's user data: the socket's id in the set.
func epollID(ev *unix.EpollEvent) *uint64 { return (*uint64)(unsafe.Pointer(&ev.Fd)) }

// watch adds c's socket to the set, edge-triggered on bytes received.
func (w *readWaker) watch(c *wakeConn) {
	if w == nil {
		return
	}
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.id != 0 {
		return
	}
	w.next++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}
	*epollID(&ev) = w.next
	added := false
	_ = rc.Control(func(fd uintptr) { added = unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, int(fd), &ev) == nil })
	if !added {
		return // closed meanwhile
	}
	c.id = w.next
	w.conns[c.id] = c
	w.count.Store(int32(len(w.conns)))
}

// unwatch forgets c, which is closing, for good: a watch racing with its
// close does not add it back. The kernel drops its socket from the set
// when it is closed.
func (w *readWaker) unwatch(c *wakeConn) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.id != 0 && c.id != unwatched {
		delete(w.conns, c.id)
		w.count.Store(int32(len(w.conns)))
	}
	c.id = unwatched
}

// unwatched is the id of a closed wakeConn.
const unwatched = ^uint64(0)

// poll wakes the readers of the sockets that received bytes since the
// last poll; it never waits.
func (w *readWaker) poll() {
	if w == nil || w.count.Load() == 0 {
		return
	}
	var evs [16]unix.EpollEvent
	n, err := unix.EpollWait(w.ep, evs[:], 0)
	if err != nil || n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range n {
		if c := w.conns[*epollID(&evs[i])]; c != nil {
			c.wake()
		}
	}
}
