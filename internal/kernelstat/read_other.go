//go:build !linux

package kernelstat

// Read returns an error wrapping ErrUnsupported on this system. It is safe
// for concurrent use.
func Read() (Counters, error) { return Counters{}, ErrUnsupported }
