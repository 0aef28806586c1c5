package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestTLSCARolloverEndsTheOldCA: while n1's roots hold the old CA and the
// new, a peer with an old-CA certificate is served; once the roots hold
// the new CA only and n1 reloads them, that peer is refused on every kind
// of new connection, both ways, while new-CA peers are still served.
// Connections made before the reload continue until they end.
func TestTLSCARolloverEndsTheOldCA(t *testing.T) {
	oldCA, newCA := newCA(t, "test"), newCA(t, "test")
	files := newTLSFiles(t)
	n1cert := issue(t, newCA, "n1", time.Hour, time.Hour)
	files.write(t, &n1cert, oldCA, newCA)
	n1, err := transport.MutualTLS(files.cert, files.key, files.ca)
	require.NoError(t, err)
	n1.ReloadInterval = -1 // Reload only: this test says when
	both := poolOf(oldCA, newCA)
	c, _ := tlsNodesWith(t, transporttest.Options{Proxied: true}, n1,
		mutualTLS(t, issue(t, newCA, "n2", time.Hour, time.Hour), both),
		mutualTLS(t, issue(t, oldCA, "n3", time.Hour, time.Hour), both))
	requireEveryKind(t, c, 2, 0, false)
	requireEveryKind(t, c, 0, 2, false)

	files.write(t, nil, newCA) // the rollover ends
	require.NoError(t, n1.Credentials.Reload())
	_, err = c.Nodes[2].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("x"))
	require.NoError(t, err, "a connection made before the reload continues")

	// End every connection to n1 and n3 (each node's proxy carries those
	// to it): the next ones are new.
	c.Proxies[0].Kill()
	c.Proxies[2].Kill()
	requireEveryKindEventually(t, c, 2, 0, true)
	requireEveryKindEventually(t, c, 0, 2, true)
	requireEveryKindEventually(t, c, 1, 0, false)
	requireEveryKindEventually(t, c, 0, 1, false)
	requireEveryKindEventually(t, c, 2, 1, false) // n2 trusts both still
}

// requireEveryKindEventually is requireEveryKind where connections may
// just have been broken: an attempt on a broken one fails with it, the
// next dials anew.
func requireEveryKindEventually(t *testing.T, c *transporttest.Cluster, from, to int, refused bool) {
	t.Helper()
	for _, kind := range connKinds(t) {
		var err error
		ok := assert.Eventually(t, func() bool {
			err = kind.try(ctxTimeout(t, 5*time.Second), c.Nodes[from], c.ID(to))
			if refused {
				return errors.Is(err, transport.ErrRefused)
			}
			return err == nil
		}, 10*time.Second, time.Millisecond)
		require.True(t, ok, "%s from %s to %s: refused %v, last error %v", kind.name, c.ID(from), c.ID(to), refused, err)
	}
}

// TestTLSRotationUnderTraffic rotates every node's certificate, then the
// CA (new CA trusted beside the old, certificates from the new, old CA
// dropped), while every pair of nodes exchanges one-way messages,
// requests, streams and files. Nothing is lost, no legitimate peer is
// refused, established connections carry on, and new handshakes present
// the new certificates. n1 and n2 are rotated by Reload, n3 by polling.
func TestTLSRotationUnderTraffic(t *testing.T) {
	oldCA, newCA := newCA(t, "test"), newCA(t, "test")
	const n = 3
	files := make([]tlsFiles, n)
	configs := make([]*transport.TLSConfig, n)
	var seen sync.Map // serials of the certificates peers presented in handshakes
	for i := range n {
		files[i] = newTLSFiles(t)
		cert := issue(t, oldCA, nodeID(i), time.Hour, time.Hour)
		files[i].write(t, &cert, oldCA)
		cfg, err := transport.MutualTLS(files[i].cert, files[i].key, files[i].ca)
		require.NoError(t, err)
		cfg.ReloadInterval = -1
		if i == 2 {
			cfg.ReloadInterval = 5 * time.Millisecond
		}
		cfg.VerifyPeer = func(cs tls.ConnectionState, _ string, _ cluster.NodeID) error {
			seen.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
			return nil
		}
		configs[i] = cfg
	}
	c, _ := tlsNodes(t, configs...)
	var received atomic.Int64
	c.HandleAll(verbOneWay, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		received.Add(1)
		return nil, nil
	}))
	for from := range n { // every lane, a stream session and a file, every way
		for to := range n {
			if from != to {
				requireEveryKind(t, c, from, to, false)
			}
		}
	}
	connectsBefore := laneConnects(c)
	traffic := startTraffic(t, c)

	reload := func(nodes ...int) {
		for _, i := range nodes {
			require.NoError(t, configs[i].Credentials.Reload())
		}
	}
	rotateCertificates := func(ca *transporttest.CA) {
		serials := make([]*big.Int, n)
		for i := range n {
			cert := issue(t, ca, nodeID(i), time.Hour, time.Hour)
			files[i].write(t, &cert)
			serials[i] = cert.Leaf.SerialNumber
		}
		reload(0, 1)
		waitFor(t, 5*time.Second, "n3 polls its files", func() bool {
			return configs[2].Credentials.Certificate().SerialNumber.Cmp(serials[2]) == 0
		})
		waitFor(t, 10*time.Second, "peers see every new certificate", func() bool {
			for _, s := range serials {
				if _, ok := seen.Load(s.String()); !ok {
					return false
				}
			}
			return true
		})
		traffic.waitRounds(t, 2)
	}
	setRoots := func(cas ...*transporttest.CA) {
		for i := range n {
			files[i].write(t, nil, cas...)
		}
		reload(0, 1, 2) // roots are not observable: n3 is told too
		traffic.waitRounds(t, 2)
	}
	rotateCertificates(oldCA) // 1. new certificates, same CA
	setRoots(oldCA, newCA)    // 2. the rollover starts: both CAs trusted
	rotateCertificates(newCA) // 3. certificates from the new CA
	setRoots(newCA)           // 4. the rollover ends

	sentNow := traffic.stop()
	require.Empty(t, traffic.errs(), "no call failed")
	waitFor(t, 10*time.Second, "every one-way message delivered", func() bool { return received.Load() == sentNow })
	for i, node := range c.Nodes {
		require.Zero(t, node.Stats().InboundRefused, "n%d refused no legitimate peer", i+1)
	}
	require.Equal(t, connectsBefore, laneConnects(c), "established lane connections carried on")
	t.Logf("%d rounds, %d one-way messages", traffic.rounds.Load(), sentNow)
}

const verbOneWay transport.Verb = 51

func nodeID(i int) cluster.NodeID { return cluster.NodeID(fmt.Sprintf("n%d", i+1)) }

// laneConnects sums the outbound lane connections every node has made.
func laneConnects(c *transporttest.Cluster) uint64 {
	var total uint64
	for _, s := range c.Stats() {
		for _, cs := range s.Conns {
			total += cs.Connects
		}
	}
	return total
}

// traffic runs one goroutine per ordered pair of nodes: each round sends
// a one-way message, a request and a file (a new connection each) and,
// every fourth round, an urgent request, a large one and a stream.
type traffic struct {
	stopped chan struct{}
	wg      sync.WaitGroup
	rounds  atomic.Int64
	sent    atomic.Int64
	mu      sync.Mutex
	failed  []error
}

func startTraffic(t *testing.T, c *transporttest.Cluster) *traffic {
	tr := &traffic{stopped: make(chan struct{})}
	for from := range c.Nodes {
		for to := range c.Nodes {
			if from == to {
				continue
			}
			kinds := map[string]connKind{} // with a file of its own to send
			for _, k := range connKinds(t) {
				kinds[k.name] = k
			}
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				tick := time.NewTicker(2 * time.Millisecond) // pacing, not waiting for anything
				defer tick.Stop()
				for round := 0; ; round++ {
					select {
					case <-tr.stopped:
						return
					case <-tick.C:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := c.Nodes[from].Send(ctx, c.ID(to), verbOneWay, []byte("gossip"))
					if err == nil {
						tr.sent.Add(1)
						_, err = c.Nodes[from].Request(ctx, c.ID(to), verbEcho, []byte("read"))
					}
					try := func(kind string) {
						if err == nil {
							err = kinds[kind].try(ctx, c.Nodes[from], c.ID(to))
						}
					}
					try("file")
					if round%4 == 0 {
						try("urgent lane")
						try("large lane")
						try("stream")
					}
					cancel()
					if err != nil {
						tr.mu.Lock()
						tr.failed = append(tr.failed, fmt.Errorf("%s to %s: %w", c.ID(from), c.ID(to), err))
						tr.mu.Unlock()
					}
					tr.rounds.Add(1)
				}
			}()
		}
	}
	t.Cleanup(func() { tr.stop() })
	return tr
}

// waitRounds waits until every pair has had about k more rounds.
func (tr *traffic) waitRounds(t *testing.T, k int64) {
	t.Helper()
	target := tr.rounds.Load() + 6*k
	waitFor(t, 10*time.Second, "traffic flows", func() bool { return tr.rounds.Load() >= target })
}

// stop ends the traffic and returns how many one-way messages were sent.
func (tr *traffic) stop() int64 {
	select {
	case <-tr.stopped:
	default:
		close(tr.stopped)
	}
	tr.wg.Wait()
	return tr.sent.Load()
}

func (tr *traffic) errs() []error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.failed
}
