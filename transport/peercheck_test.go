package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// The peer check drives testdata/pypeer.py, a peer written in Python from
// wire/doc.go alone, against a real node: it tests the claim that the doc
// is enough to write a compatible peer in another language. Writing it
// found what the doc left out (large responses below the frame limit,
// the membership rule, failure answers to one-way messages, TLS); the
// doc now says them.

const (
	peerOneWay transport.Verb = 7101
	peerEcho   transport.Verb = 7102
)

// pythonPeer returns the path of pypeer.py, skipping the test without python3.
func pythonPeer(t *testing.T) (python, script string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("peer check needs python3 on PATH: %v", err)
	}
	script, err = filepath.Abs(filepath.Join("testdata", "pypeer.py"))
	require.NoError(t, err)
	return python, script
}

// runPeer runs pypeer.py with args and returns its JSON events; it fails the
// test if the peer exits non-zero.
func runPeer(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	events, err := runPeerErr(t, args...)
	require.NoError(t, err)
	return events
}

func runPeerErr(t *testing.T, args ...string) ([]map[string]any, error) {
	t.Helper()
	python, script := pythonPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	var events []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "peer output %q", sc.Text())
		events = append(events, ev)
	}
	shown := make([]string, len(args))
	for i, a := range args {
		if len(a) > 40 {
			a = a[:40] + "..."
		}
		shown[i] = a
	}
	t.Logf("pypeer.py %s:\n%s%s", strings.Join(shown, " "), out, stderr.String())
	if err != nil {
		return events, fmt.Errorf("pypeer.py: %w: %s", err, stderr.String())
	}
	return events, nil
}

func peerEvent(t *testing.T, events []map[string]any, name string) map[string]any {
	t.Helper()
	for _, ev := range events {
		if ev["event"] == name {
			return ev
		}
	}
	t.Fatalf("pypeer.py printed no %q event: %v", name, events)
	return nil
}

type oneWayCall struct {
	from    cluster.NodeID
	payload []byte
	request bool
}

// peerCheckNode starts one node that knows the Python peer "py1" as a
// member and handles peerOneWay (into the returned channel) and peerEcho.
func peerCheckNode(t *testing.T, tweak func(*transport.Config)) (*transport.Transport, <-chan oneWayCall) {
	t.Helper()
	return peerCheckNodeAt(t, tweak, "127.0.0.1:1")
}

// peerCheckNodeAt is peerCheckNode with the Python peer at pyAddr.
func peerCheckNodeAt(t *testing.T, tweak func(*transport.Config), pyAddr string) (*transport.Transport, <-chan oneWayCall) {
	t.Helper()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		if tweak != nil {
			tweak(cfg)
		}
	})
	// A member the node dials only when it sends to it.
	c.Members.Add(cluster.Member{ID: "py1", Addr: pyAddr})
	oneWays := make(chan oneWayCall, 16)
	c.Nodes[0].Handle(peerOneWay, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		oneWays <- oneWayCall{from: m.From, payload: bytes.Clone(m.Payload), request: m.IsRequest}
		return nil, nil
	}))
	c.Nodes[0].Handle(peerEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	return c.Nodes[0], oneWays
}

func vp(verb transport.Verb, payload []byte) string {
	return fmt.Sprintf("%d:%s", verb, hex.EncodeToString(payload))
}

func TestPeerCheckSelfTest(t *testing.T) {
	ev := peerEvent(t, runPeer(t, "-", "selftest"), "selftest")
	assert.Equal(t, true, ev["ok"])
}

func TestPeerCheckInitiator(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int // of the echo
		extra []string
	}{
		{"separate frames", 3000, nil},
		{"one frame", 3000, []string{"--one-frame"}},
		{"no ttl", 3000, []string{"--ttl", "0"}},
		{"urgent lane", 3000, []string{"--lane", "0"}},
		// Above Lanes.LargeThreshold (64 KiB) but within one frame: the
		// response comes back as a large message, granted or eager.
		{"100 KiB echo", 100 << 10, nil},
		{"100 KiB echo, eager", 100 << 10, []string{"--caps", "2"}},
		// CapAcceptorID offered: the reply names the node.
		{"acceptor ID", 3000, []string{"--caps", "8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id cluster.NodeID
			node, oneWays := peerCheckNode(t, func(cfg *transport.Config) { id = cfg.NodeID })
			oneWay := []byte("one-way from python \x00\xff")
			echo := make([]byte, tc.size)
			for i := range echo {
				echo[i] = byte(i * 7)
			}
			args := append([]string{node.Addr().String(), "ok", "test", "py1",
				"--oneway", vp(peerOneWay, oneWay), "--request", fmt.Sprintf("%d:@%d", peerEcho, tc.size)}, tc.extra...)
			events := runPeer(t, args...)

			reply := peerEvent(t, events, "reply")
			assert.EqualValues(t, wire.Accepted, reply["reason"])
			assert.EqualValues(t, wire.Version3, reply["version"])
			if slices.Contains(tc.extra, "8") {
				assert.EqualValues(t, wire.CapAcceptorID, reply["caps"])
				assert.Equal(t, string(id), reply["message"], "the acceptor's node ID")
			} else {
				assert.Empty(t, reply["message"])
			}

			resp := peerEvent(t, events, "response")
			assert.EqualValues(t, wire.FlagResponse, uint8(resp["flags"].(float64))&uint8(wire.FlagResponse|wire.FlagFailure))
			assert.EqualValues(t, 2, resp["id"])
			assert.Equal(t, hex.EncodeToString(echo), resp["payload"], "the echo came back byte-exact")

			got := within(t, oneWays, 5*time.Second, "the one-way message")
			assert.Equal(t, cluster.NodeID("py1"), got.from)
			assert.Equal(t, oneWay, got.payload)
			assert.False(t, got.request)
		})
	}
}

// TestPeerCheckUnknownNode: a peer whose node ID is not a member is
// refused with UnknownNode (wire/doc.go, the Hello's node field).
func TestPeerCheckUnknownNode(t *testing.T) {
	node, _ := peerCheckNode(t, nil)
	events, err := runPeerErr(t, node.Addr().String(), "ok", "test", "stranger")
	require.Error(t, err)
	assert.EqualValues(t, wire.UnknownNode, peerEvent(t, events, "reply")["reason"])
}

// TestPeerCheckMistakes makes the deliberate mistakes the doc calls errors
// and checks the node closes the connection, for the reason the doc
// gives, and delivers nothing.
func TestPeerCheckMistakes(t *testing.T) {
	const none = -1
	for _, tc := range []struct {
		name     string
		reason   wire.RefuseReason // the Reply's reason, for a refused handshake
		refusal  int               // transport.Refusal counted for a handshake mistake; none otherwise
		badInput int               // transport.BadInput counted for a frame mistake; none otherwise
	}{
		{"wrong-cluster", wire.WrongCluster, int(transport.RefusedCluster), none},
		{"bad-hello-crc", 0, int(transport.RefusedMalformed), none},
		{"bad-checksum", 0, none, int(transport.BadInputChecksum)},
		{"unknown-kind", 0, none, int(transport.BadInputMalformed)},
		{"overrun", 0, none, int(transport.BadInputMalformed)},
		{"response-from-initiator", 0, none, int(transport.BadInputMalformed)},
		{"truncated-eof", 0, none, int(transport.BadInputTruncated)},
		// A frame that never finishes: cut off after Timeouts.Keepalive.
		{"truncated", 0, none, int(transport.BadInputSilent)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, oneWays := peerCheckNode(t, func(cfg *transport.Config) {
				cfg.Timeouts.Keepalive = 2 * time.Second // the shortest allowed: the truncated frame's cut-off
			})
			events := runPeer(t, node.Addr().String(), tc.name, "test", "py1",
				"--oneway", vp(peerOneWay, []byte("must not arrive")), "--watch", "4")
			res := peerEvent(t, events, "result")
			switch {
			case tc.name == "wrong-cluster":
				assert.EqualValues(t, tc.reason, res["reason"])
				assert.EqualValues(t, 0, res["version"])
				assert.NotEmpty(t, res["message"])
				assert.Equal(t, true, res["closed"], "the node closes after a refusal")
			case tc.name == "bad-hello-crc":
				assert.Contains(t, res["error"], "EOFError", "closed without a Reply")
			default:
				assert.Equal(t, true, res["closed"], "the node closed the connection")
				if !strings.HasPrefix(tc.name, "truncated") {
					for _, k := range res["frames"].([]any) {
						assert.Equal(t, "Beat", k, "the node sends only beats before it closes")
					}
				}
			}
			if tc.refusal != none {
				waitFor(t, 5*time.Second, "refusal counted", func() bool {
					return node.Stats().Refusals[tc.refusal] == 1
				})
			}
			if tc.badInput != none {
				waitFor(t, 5*time.Second, "bad input counted as "+transport.BadInput(tc.badInput).String(), func() bool {
					return node.Stats().BadInput[tc.badInput] == 1
				})
			}
			select {
			case m := <-oneWays:
				t.Fatalf("a message was delivered: %+v", m)
			default:
			}
			assert.Zero(t, node.Stats().Total().MessagesReceived, "nothing delivered")
		})
	}
}

// TestPeerCheckAcceptor: the node dials the Python peer, which answers
// the handshake as an acceptor, beats, and echoes requests on the back
// channel.
func TestPeerCheckAcceptor(t *testing.T) {
	python, script := pythonPeer(t)
	cmd := exec.Command(python, script, "127.0.0.1:0", "accept", "test", "py1", "--timeout", "30")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr capturedLogs // read while the peer writes it
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	events := make(chan map[string]any, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	var seen []map[string]any
	t.Cleanup(func() {
		stdin.Close() // the peer exits when its stdin closes
		for ev := range events {
			seen = append(seen, ev)
		}
		_ = cmd.Wait()
		t.Logf("pypeer.py accept: %v\n%s", seen, stderr.String())
	})
	next := func(name string) map[string]any {
		t.Helper()
		timeout := time.NewTimer(10 * time.Second)
		defer timeout.Stop()
		for {
			select {
			case ev, ok := <-events:
				require.True(t, ok, "pypeer.py ended before %q: %s", name, stderr.String())
				seen = append(seen, ev)
				assert.NotEqual(t, "conn-error", ev["event"], "pypeer.py: %v", ev)
				if ev["event"] == name {
					return ev
				}
			case <-timeout.C:
				t.Fatalf("no %q event from pypeer.py; saw %v", name, seen)
			}
		}
	}
	addr := next("listening")["addr"].(string)

	node, _ := peerCheckNodeAt(t, nil, addr)
	payload := []byte("to the python acceptor \x00\x01")
	resp, err := node.Request(ctxTimeout(t, 10*time.Second), "py1", peerEcho, payload)
	require.NoError(t, err)
	assert.Equal(t, payload, resp, "the python acceptor's echo")
	hello := next("hello")
	assert.Equal(t, "n1", hello["node"])
	assert.Equal(t, "test", hello["cluster"])

	require.NoError(t, node.Send(ctxTimeout(t, 10*time.Second), "py1", peerOneWay, []byte("one-way to python")))
	for {
		m := next("message")
		if uint8(m["flags"].(float64))&uint8(wire.FlagExpectsResponse) == 0 {
			assert.EqualValues(t, peerOneWay, m["verb"])
			assert.Equal(t, hex.EncodeToString([]byte("one-way to python")), m["payload"])
			break
		}
	}
}

// TestPeerCheckOneWayRejected: with OverloadReject, a node out of inbound
// capacity answers a one-way message with a failure response carrying the
// one-way message's ID (wire/doc.go: "A receiver may also answer a
// one-way message").
func TestPeerCheckOneWayRejected(t *testing.T) {
	const peerBlock transport.Verb = 7103
	node, _ := peerCheckNode(t, func(cfg *transport.Config) {
		cfg.Memory.InboundOverload = transport.OverloadReject
		cfg.Memory.Inbound.PerConnection = 8 << 10
	})
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	node.Handle(peerBlock, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		blocked <- struct{}{}
		<-release
		return nil, nil
	}))
	t.Cleanup(func() { close(release) }) // before the node closes
	// One-way 100 holds the connection's capacity in its handler; one-way
	// 101 and request 2 find none.
	events := runPeer(t, node.Addr().String(), "ok", "test", "py1",
		"--oneway", fmt.Sprintf("%d:@6000", peerBlock), "--oneway", fmt.Sprintf("%d:@6000", peerOneWay),
		"--request", fmt.Sprintf("%d:@6000", peerEcho))
	within(t, blocked, 5*time.Second, "the blocking handler")
	stray := peerEvent(t, events, "stray-response")
	assert.EqualValues(t, 101, stray["id"], "a response to the one-way message")
	assert.EqualValues(t, wire.FlagResponse|wire.FlagFailure, uint8(stray["flags"].(float64))&uint8(wire.FlagResponse|wire.FlagFailure))
	assert.EqualValues(t, wire.FailureOverloaded, stray["failure"].(map[string]any)["code"])
	resp := peerEvent(t, events, "response")
	assert.EqualValues(t, wire.FailureOverloaded, resp["failure"].(map[string]any)["code"])
}
