package transport_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestDropsOfALeftPeerAreToldBeforeItsRejoin: messages queued for n2 when
// it leaves are dropped (ReasonPeerLeft) and handed to OnDropped before
// Remove returns, so before n2, added again, is told as joined. A
// database that stores a hint in OnDropped and replays its hints when it
// sees a node join missed the hints of drops told after the Join: the
// transport failed the queued messages on a goroutine of its own, which
// could run after the Leave's Remove had returned and the Join had been
// told.
func TestDropsOfALeftPeerAreToldBeforeItsRejoin(t *testing.T) {
	inBubble(t, 20*time.Second, func(t *testing.T) {
		var (
			mu     sync.Mutex
			events []string
		)
		record := func(e string) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
		joined := make(chan struct{})
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			if i == 0 {
				cfg.OnDropped = func(d transport.DroppedMessage) {
					// Told after the Join unless told before Remove
					// returned: wait for the Join, or for an hour of the
					// bubble's clock, which passes at once if the Join
					// waits for this drop.
					select {
					case <-joined:
					case <-time.After(time.Hour):
					}
					record(fmt.Sprintf("drop %s %s", d.Peer, d.Reason))
				}
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		n2 := c.ID(1)
		member, _ := c.Members.Lookup(n2)
		require.NoError(t, c.Nodes[1].Close()) // n1's messages to n2 wait, queued
		require.NoError(t, c.Nodes[0].Send(context.Background(), n2, verbData, []byte("x")))
		synctest.Wait()

		stop := c.Members.Watch(func(ev cluster.Event) {
			if ev.Type == cluster.Join && ev.Member.ID == n2 {
				record("join " + string(ev.Member.ID))
				close(joined)
			}
		})
		defer stop()
		c.Members.Remove(n2)
		c.Members.Add(member)
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"drop " + string(n2) + " " + transport.ReasonPeerLeft.String(), "join " + string(n2)}, events)
	})
}
