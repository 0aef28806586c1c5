//go:build !linux

package transport

// readWaker wakes readers on Linux only (see wake.go); elsewhere there is
// none.
type readWaker struct{}

func theReadWaker() *readWaker         { return nil }
func (w *readWaker) watch(*wakeConn)   {}
func (w *readWaker) unwatch(*wakeConn) {}
func (w *readWaker) poll()             {}
