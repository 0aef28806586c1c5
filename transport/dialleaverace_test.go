package transport

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestADialThatFindsThePeerGoneFailsItsMessagesAsPeerLeft: n2 leaves
// right after a Request to it looked it up, its Leave still on its way
// (cluster/memberlist delivers events from its own goroutine, after
// Lookup already answers). The lane's dial asks the membership for n2's
// address and finds none: it failed the request, and a one-way message
// queued after it, with ErrUnknownPeer (Dropped[unknown_peer]), where the
// Leave, had it come first, fails them with ErrPeerLeft. A caller that
// retries elsewhere on ErrPeerLeft, or alerts on unknown peers (a
// misconfiguration), was told the wrong thing.
func TestADialThatFindsThePeerGoneFailsItsMessagesAsPeerLeft(t *testing.T) {
	n2 := startNode(t, "n2", cluster.NewStatic(), nil) // a real peer, never reached
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
	members := deferredWatch{&hookedMembership{Static: static}}
	n1 := startNode(t, "n1", members, func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 2*time.Millisecond
	})

	members.arm("n2", func() { static.Remove("n2") }) // right after the Request's Lookup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n1.Request(ctx, "n2", 1, []byte("q"))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrPeerLeft, "the request's error: %v", err)
	assert.NotErrorIs(t, err, ErrUnknownPeer)
	reason, _ := ReasonOf(err)
	assert.Equal(t, ReasonPeerLeft, reason)

	// A one-way message to n2's entry, its Leave still on its way.
	require.NoError(t, n1.Send(ctx, "n2", 1, []byte("m")))
	eventually(t, func() bool {
		d := n1.Stats().Total().Dropped
		return d[ReasonPeerLeft]+d[ReasonUnknownPeer] == 2
	}, "both messages dropped")
	d := n1.Stats().Total().Dropped
	assert.Equal(t, uint64(2), d[ReasonPeerLeft], "dropped as peer_left")
	assert.Zero(t, d[ReasonUnknownPeer], "dropped as unknown_peer")
}

// TestADialForAFileOrStreamThatFindsThePeerGoneFailsAsPeerLeft: as
// TestADialThatFindsThePeerGoneFailsItsMessagesAsPeerLeft, for SendFile
// and OpenStream, which dial their own connections (dialFor): n2 leaves
// right after the call looked it up, its Leave still on its way. The
// dial finds no address for n2 and the call failed with ErrUnknownPeer,
// where the Leave, had it come first, fails it with ErrPeerLeft.
func TestADialForAFileOrStreamThatFindsThePeerGoneFailsAsPeerLeft(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, []byte("some bytes"), 0o600))
	calls := []struct {
		name string
		call func(ctx context.Context, n1 *Transport) error
	}{
		{"SendFile", func(ctx context.Context, n1 *Transport) error {
			f, err := os.Open(file)
			require.NoError(t, err)
			defer f.Close()
			_, err = n1.SendFile(ctx, "n2", 1, f, 0, 10)
			return err
		}},
		{"OpenStream", func(ctx context.Context, n1 *Transport) error {
			_, err := n1.OpenStream(ctx, "n2", 1)
			return err
		}},
		{"OpenStream OwnConnection", func(ctx context.Context, n1 *Transport) error {
			_, err := n1.OpenStream(ctx, "n2", 1, OwnConnection())
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			n2 := startNode(t, "n2", cluster.NewStatic(), nil) // a real peer, never reached
			static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
			members := deferredWatch{&hookedMembership{Static: static}}
			n1 := startNode(t, "n1", members, nil)

			members.arm("n2", func() { static.Remove("n2") }) // right after the call's Lookup
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.call(ctx, n1)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrPeerLeft, "the call's error: %v", err)
			assert.NotErrorIs(t, err, ErrUnknownPeer)
			reason, _ := ReasonOf(err)
			assert.Equal(t, ReasonPeerLeft, reason)
		})
	}
}
