package transport_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestAPortProbeIsNotMalformedInput: a load balancer's health check or a
// port probe connects and closes without a byte. The node counted each
// as a malformed handshake (Refusals[malformed]) and logged it as a
// refused connection, so every probe raised the operator's bad-input
// alarm. Such a connection is now counted apart (InboundProbes), outside
// InboundRefused, whose every count is a handshake turned away; one that
// sends part of a Hello and closes is still malformed. With TLS too.
func TestAPortProbeIsNotMalformedInput(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "TLS"}[withTLS], func(t *testing.T) {
			var node *transport.Transport
			if withTLS {
				ca := newCA(t, "test")
				c, _ := tlsNodes(t, tlsFor(t, ca, "n1"))
				node = c.Nodes[0]
			} else {
				node = newCluster(t, 1, nil).Nodes[0]
			}
			probe := func(send []byte) {
				conn, err := net.Dial("tcp", node.Addr().String())
				require.NoError(t, err)
				if send != nil {
					_, err = conn.Write(send)
					require.NoError(t, err)
				}
				require.NoError(t, conn.Close())
			}
			for range 3 {
				probe(nil)
			}
			waitFor(t, 5*time.Second, "three probes counted", func() bool {
				return node.Stats().InboundProbes == 3
			})
			st := node.Stats()
			assert.Zero(t, st.InboundRefused, "probes counted as refused handshakes: %v", st.Refusals)
			assert.Zero(t, st.InboundMalformed, "probes counted as bad input: %v", st.BadInput)

			probe([]byte{0x49, 0x4e, 0x4f}) // part of the magic, then gone
			waitFor(t, 5*time.Second, "a partial Hello counted", func() bool {
				st := node.Stats()
				return st.Refusals[transport.RefusedMalformed]+st.Refusals[transport.RefusedTLS] == 1
			})
			assert.EqualValues(t, 3, node.Stats().InboundProbes, "a partial Hello counted as a probe")
		})
	}
}
