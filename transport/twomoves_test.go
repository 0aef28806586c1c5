package transport

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestTwoQuickMovesKeepTheConnectionToTheLatestAddress: n2 moves from A
// to B and at once to C, and the membership's events are behind its
// member map. n1's lane, its connection to A broken, redials at the
// address the membership gives now, C. The late event for B then killed
// that good connection ("the peer moved to B"), failing the request
// written on it with ErrConnectionReset, and the lane dialled once more.
// The peer now follows the membership's address, not the event's.
func TestTwoQuickMovesKeepTheConnectionToTheLatestAddress(t *testing.T) {
	answer := func(tr *Transport, started chan<- struct{}, release <-chan struct{}) {
		tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
			if string(m.Payload) == "slow" {
				started <- struct{}{}
				<-release
			}
			return []byte(tr.Addr().String()), nil
		}))
	}
	n1Entry := cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"})
	atA := startNode(t, "n2", n1Entry, nil)
	answer(atA, nil, nil)
	members := newLaggingMembership(cluster.Member{ID: "n2", Addr: atA.Addr().String()})
	n1 := startNode(t, "n1", members, func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 5*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n1.Request(ctx, "n2", 1, []byte("q"))
	require.NoError(t, err)
	require.Equal(t, atA.Addr().String(), string(resp))

	started, release := make(chan struct{}, 1), make(chan struct{})
	atC := startNode(t, "n2", n1Entry, nil)
	answer(atC, started, release)
	members.Add(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"}) // B, where n2 stayed a moment
	members.Add(cluster.Member{ID: "n2", Addr: atC.Addr().String()})
	atA.Close() // n1's connection to A breaks; the lane redials, to C
	eventually(t, func() bool {
		resp, err := n1.Request(ctx, "n2", 1, []byte("q"))
		return err == nil && string(resp) == atC.Addr().String()
	}, "n1 reaches n2 at C")
	connects := n1.Stats().Total().Connects

	slow := make(chan error, 1)
	go func() {
		resp, err := n1.Request(ctx, "n2", 1, []byte("slow"))
		if err == nil && string(resp) != atC.Addr().String() {
			err = assert.AnError
		}
		slow <- err
	}()
	<-started       // the slow request reached C
	members.flush() // n2 moved to B, then to C
	close(release)
	assert.NoError(t, <-slow, "the request written on the connection to C")
	assert.Equal(t, connects, n1.Stats().Total().Connects, "the connection to C was replaced")
}

// TestAMoveToldLateKeepsAStreamSessionAlreadyThere: n2 moved from A to B,
// and its event is behind the membership's map. A stream opened meanwhile
// dials the address the membership gives, B. The late event then closed
// that session, which was where it should be, and the stream on it broke.
func TestAMoveToldLateKeepsAStreamSessionAlreadyThere(t *testing.T) {
	n1Entry := cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"})
	echoes := func(tr *Transport) {
		tr.HandleStream(1, StreamHandlerFunc(func(_ context.Context, s *Stream) {
			_, _ = io.Copy(s, s)
		}))
	}
	atA, atB := startNode(t, "n2", n1Entry, nil), startNode(t, "n2", n1Entry, nil)
	echoes(atA)
	echoes(atB)
	members := newLaggingMembership(cluster.Member{ID: "n2", Addr: atA.Addr().String()})
	n1 := startNode(t, "n1", members, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s *Stream
	echo := func(what string) error {
		if _, err := s.Write([]byte(what)); err != nil {
			return err
		}
		got := make([]byte, len(what))
		if _, err := io.ReadFull(s, got); err != nil {
			return err
		}
		if string(got) != what {
			return fmt.Errorf("echoed %q, want %q", got, what)
		}
		return nil
	}
	var err error
	s, err = n1.OpenStream(ctx, "n2", 1) // on a session to A
	require.NoError(t, err)
	require.NoError(t, echo("at A"))
	s.Close()

	members.Add(cluster.Member{ID: "n2", Addr: atB.Addr().String()}) // told late
	atA.Close()
	eventually(t, func() bool {
		if s, err = n1.OpenStream(ctx, "n2", 1); err != nil {
			return false
		}
		if err = echo("at B"); err != nil {
			s.Close()
			return false
		}
		return true
	}, "a stream on a session to B")
	defer s.Close()
	members.flush() // n2 moved to B
	assert.NoError(t, echo("after"), "the stream on the session to B")
}
