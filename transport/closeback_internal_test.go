package transport

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
)

// TestCloseBackBeforeItServes: a connection accepted as Shutdown finishes
// is registered (trackInConn), and its back channel closed, before its
// serve starts its beats; finishInbound may likewise find one between the
// two. closeBack stopped the beat timer, which did not exist yet: a nil
// pointer dereference. Its peer reads the end of the back channel, and
// the beats, once they start, write nothing after it.
func TestCloseBackBeforeItServes(t *testing.T) {
	tr := coreTransport(t, nil)
	p, err := tr.claimConn("n2", uint8(routing.Small))
	require.NoError(t, err)
	ours, theirs := tcpPair(t)
	ic := newInConn(tr, p, routing.Small, ours, 0)
	ic.closeBack()
	require.True(t, ic.backClosed.Load(), "a TCP connection's back channel closes alone")

	ic.startBeats()
	defer ic.beatTimer.Stop()
	ic.beat() // as its timer would
	require.NoError(t, theirs.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := theirs.Read(make([]byte, 64))
	assert.Zero(t, n, "nothing written after the end")
	assert.ErrorIs(t, err, io.EOF, "the peer reads the end of the back channel")
}
