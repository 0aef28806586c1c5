package memberlist

import (
	"context"
	"io"
	"log"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// TestALateLeaveDoesNotFailARequestToAMemberThatCameBack: n1 flaps —
// declared dead, then alive again at the same address — while the
// watchers are busy with an earlier change (an application's watcher slow
// with n3's Join). The member map has n1 again, but the Leave and the
// Join wait in the queue, kept as two events (a restart is kept visible).
// n2 then sends n1 a request, which n1's handler holds. Once the watchers
// got to the Leave, n2's transport failed that request with ErrPeerLeft,
// though n1 was a member when it was sent and was one still, and n1
// answered it. The transport now asks Lookup (cluster.LookupFromWatch)
// and ignores the late Leave; the application's watcher still sees both.
func TestALateLeaveDoesNotFailARequestToAMemberThatCameBack(t *testing.T) {
	newNode := func(id cluster.NodeID, members cluster.Membership) *transport.Transport {
		cfg := transport.DefaultConfig()
		cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = id, "test", "127.0.0.1:0"
		cfg.Membership = members
		cfg.Security.AcceptUnknownPeers = true
		cfg.Telemetry.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	n1 := newNode("n1", cluster.NewStatic())
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	n1.Handle(1, transport.HandlerFunc(func(ctx context.Context, msg *transport.Message) ([]byte, error) {
		return msg.Payload, nil
	}))
	n1.Handle(2, transport.HandlerFunc(func(ctx context.Context, msg *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-release
		return msg.Payload, nil
	}))

	// n2's membership: memberlist's adapter, fed through its delegate.
	m := newMembership(log.New(io.Discard, "", 0), "127.0.0.1:7000")
	go m.dispatch()
	t.Cleanup(func() {
		close(m.closing)
		<-m.dispatchDone
	})
	d := (*delegate)(m)
	n1Node := mlNode("n1", n1.Addr().String())
	d.NotifyJoin(n1Node)
	n2 := newNode("n2", m)

	// The application's watcher: slow with n3's Join.
	inN3, n3Done := make(chan struct{}), make(chan struct{})
	seen := make(chan cluster.Event, 16)
	stopApp := m.Watch(func(ev cluster.Event) {
		if ev.Member.ID == "n3" {
			close(inN3)
			<-n3Done
		}
		seen <- ev
	})
	defer stopApp()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n2.Request(ctx, "n1", 1, []byte("warm"))
	require.NoError(t, err)

	d.NotifyJoin(mlNode("n3", "127.0.0.1:1"))
	<-inN3
	d.NotifyLeave(n1Node) // declared dead: no leaving flag
	d.NotifyJoin(n1Node)  // alive again
	_, ok := m.Lookup("n1")
	require.True(t, ok, "n1 is a member again")

	errs := make(chan error, 1)
	go func() {
		_, err := n2.Request(ctx, "n1", 2, []byte("sent after n1 came back"))
		errs <- err
	}()
	<-started
	close(n3Done)
	for ev := range seen { // every watcher has had n1's Leave once the app's has its Join
		if ev.Member.ID == "n1" && ev.Type == cluster.Join {
			break
		}
	}
	close(release)
	require.NoError(t, <-errs, "a request sent to n1 while it was a member, answered by n1")
}
