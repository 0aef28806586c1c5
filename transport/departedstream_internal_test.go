package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestAStreamToANodeThatLeftEndsWithItsLeave: a stream n1 opened to a
// node that then leaves ends with the Leave (its reads fail with
// ErrPeerLeft), and once its opener closes it, late, what it held of the
// departed entry goes with it: the entry becomes quiet, so that the
// janitor can fold it like any other. (Until Close the stream holds its
// place among the peer's streams, and the entry with it.)
func TestAStreamToANodeThatLeftEndsWithItsLeave(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) {
			static1 := cluster.NewStatic()
			n1 := startNode(t, "n1", static1, nil)
			n1m := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
			const podID cluster.NodeID = "pod"
			pod := startNode(t, podID, cluster.NewStatic(n1m), nil)
			pod.HandleStream(Verb(41), StreamHandlerFunc(func(ctx context.Context, s *Stream) {
				<-ctx.Done()
			}))
			static1.Add(cluster.Member{ID: podID, Addr: pod.Addr().String()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var opts []StreamOption
			if own {
				opts = append(opts, OwnConnection())
			}
			s, err := n1.OpenStream(ctx, podID, Verb(41), opts...)
			require.NoError(t, err)
			_, err = s.Write([]byte("x"))
			require.NoError(t, err)
			p := n1.peerStats(podID)
			require.NotNil(t, p)

			static1.Remove(podID)
			_, err = s.Read(make([]byte, 1))
			require.True(t, errors.Is(err, ErrPeerLeft), "read after the Leave: %v", err)
			require.False(t, p.quiet(), "the stream, not closed, holds its place")
			_ = s.Close() // its connection ended: whatever Close says
			eventually(t, p.quiet, "the departed entry quiet once its stream, ended by the Leave, is closed")
		})
	}
}
