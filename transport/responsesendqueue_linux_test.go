package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/routing"
)

// TestAResponseWriteBlockedOnAPeerThatStoppedReadingShowsItsQueue: a peer
// sends requests and reads none of the responses, which fill the socket's
// send queue on the connection it sent them on. The socket measurement
// promises that "a write blocked on a peer that stopped reading" shows its
// queue at each collection; it read the send queues of the node's own
// connections only, never those its responses go back on, and a node
// stuck writing responses to a peer showed no send queue at all.
func TestAResponseWriteBlockedOnAPeerThatStoppedReadingShowsItsQueue(t *testing.T) {
	n, reader, _ := deafRequester(t, 144)

	// The responses' writer fills the socket and blocks there soon after
	// they are queued: a collection then reads the queue. (Before it did
	// not, however long the write stood.)
	waitFor(t, 10*time.Second, "the responses' socket send queue measured at collection", func() bool {
		data := collect(t, reader)
		return sumWhere(data["internode.socket.send_queue_peak_bytes"], "peer", "deaf", "lane", "small") > 0
	})
	st := laneStats(t, n, "deaf", routing.Small)
	assert.True(t, st.QueuesMeasured)
	assert.Positive(t, st.SendQueueMax, "the responses' socket send queue, full")
}
