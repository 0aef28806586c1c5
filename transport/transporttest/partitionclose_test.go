package transporttest

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPartitionHidesAPeersCloseFromTheWriter: across a partition, one end
// closing is as silent to the other end's writes as to its reads — the
// writer's bytes are buffered as any others, with no error — until Heal,
// after which the writer learns the peer has gone (EPIPE).
func TestPartitionHidesAPeersCloseFromTheWriter(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, server := connPair(t, n, "a", "b")
	n.Partition("a", "b")
	require.NoError(t, server.Close())

	_, err := client.Write([]byte("into the partition"))
	assert.NoError(t, err, "the close does not cross the partition: the write is buffered")
	_, err = readWithin(client, 20*time.Millisecond)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "nor does the reader learn of it")

	n.Heal("a", "b")
	_, err = readWithin(client, 5*time.Second)
	assert.Equal(t, io.EOF, err, "after Heal the end arrives")
	_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = client.Write([]byte("after the heal"))
	assert.ErrorIs(t, err, syscall.EPIPE, "and the writer learns the peer closed")
}

// TestHealWakesAWriterBlockedOnAClosedPeer: a writer that filled the
// buffer towards an end that closed during a partition waits, as any
// writer on a partition does, and Heal wakes it with EPIPE.
func TestHealWakesAWriterBlockedOnAClosedPeer(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "asynctimerchan=1") {
		t.Skip("testing/synctest needs the timers of Go 1.23 and later (asynctimerchan=0)")
	}
	synctest.Test(t, func(t *testing.T) {
		n := NewNetwork()
		defer n.Close()
		client, server := connPair(t, n, "a", "b")
		n.Partition("a", "b")
		require.NoError(t, server.Close())
		wrote := make(chan error, 1)
		go func() {
			_, err := client.Write(make([]byte, pipeBuffer+1))
			wrote <- err
		}()
		synctest.Wait()
		select {
		case err := <-wrote:
			t.Fatalf("the write ended across the partition: %v", err)
		default:
		}
		n.Heal("a", "b")
		synctest.Wait()
		select {
		case err := <-wrote:
			assert.ErrorIs(t, err, syscall.EPIPE)
		default:
			t.Fatal("Heal left the writer waiting")
		}
	})
}
