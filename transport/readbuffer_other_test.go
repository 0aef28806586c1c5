//go:build !unix

package transport_test

import "net"

// smallReadBuffer is a Dialer; on this system its connections keep the
// system's receive buffer (see readbuffer_unix_test.go).
func smallReadBuffer(int) *net.Dialer { return &net.Dialer{} }
