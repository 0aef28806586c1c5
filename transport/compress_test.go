package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

const (
	verbCompressEcho   transport.Verb = 60 // answers with the payload
	verbCompressUrgent transport.Verb = 61 // the same, on the urgent lane
	verbCompressShort  transport.Verb = 62 // answers with the first KiB of the payload
	verbCompressSink   transport.Verb = 63 // one-way
)

// jsonLike returns n bytes of JSON-like text that differs with seed.
func jsonLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	var b strings.Builder
	for b.Len() < n {
		fmt.Fprintf(&b, `{"key":"user:%06d","ts":%d,"op":"put","value":{"name":"alice","city":"Lyon"}},`,
			r.IntN(1e6), 1700000000+r.IntN(1e6))
	}
	return []byte(b.String()[:n])
}

func compressHandlers(c *transporttest.Cluster, sunk chan<- []byte) {
	echo := transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	})
	c.HandleAll(verbCompressEcho, echo)
	c.HandleAll(verbCompressUrgent, echo)
	c.HandleAll(verbCompressShort, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload[:1<<10], nil
	}))
	c.HandleAll(verbCompressSink, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		sunk <- bytes.Clone(m.Payload) // valid only during the call
		return nil, nil
	}))
}

// compressStats returns node's stats of lane with peer.
func compressStats(t *testing.T, tr *transport.Transport, peer string, lane routing.Lane) transport.ConnStats {
	t.Helper()
	for _, cs := range tr.Stats().Conns {
		if string(cs.Peer) == peer && cs.Lane == lane {
			return cs
		}
	}
	return transport.ConnStats{}
}

// TestCompressionRoundTripEveryLane: with compression on at both ends,
// over plain TCP and TLS, requests and one-way messages on the urgent and
// small lanes and the responses on every lane travel compressed and
// arrive intact; large messages travel as they are; the stats and the
// internode.compression.bytes metric show the bytes before and after.
func TestCompressionRoundTripEveryLane(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[secure], func(t *testing.T) {
			readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
			opts := transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
				cfg.Lanes.Compression = [routing.NumLanes]transport.Compression{
					transport.CompressionOn, transport.CompressionOn, transport.CompressionOn}
				cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbCompressUrgent: routing.Urgent}
				cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
			}}
			if secure {
				ca, err := transporttest.NewCA("test")
				require.NoError(t, err)
				opts.CA = ca
			}
			c := transporttest.New(t, 2, opts)
			sunk := make(chan []byte, 100)
			compressHandlers(c, sunk)
			n1 := c.Nodes[0]
			ctx := ctxTimeout(t, 10*time.Second)
			for i := range 20 {
				small := jsonLike(uint64(i), 2<<10)
				resp, err := n1.Request(ctx, c.ID(1), verbCompressEcho, small)
				require.NoError(t, err)
				require.Equal(t, small, resp, "small lane")
				resp, err = n1.Request(ctx, c.ID(1), verbCompressUrgent, small)
				require.NoError(t, err)
				require.Equal(t, small, resp, "urgent lane")
				large := jsonLike(uint64(100+i), 100<<10)
				resp, err = n1.Request(ctx, c.ID(1), verbCompressShort, large)
				require.NoError(t, err)
				require.Equal(t, large[:1<<10], resp, "large lane, response in a batch")
				resp, err = n1.Request(ctx, c.ID(1), verbCompressEcho, large)
				require.NoError(t, err)
				require.Equal(t, large, resp, "large lane, large response")
				require.NoError(t, n1.Send(ctx, c.ID(1), verbCompressSink, small))
				require.Equal(t, small, <-sunk)
			}
			n2 := c.Nodes[1]
			// A writer counts its frames once their write has returned,
			// which may be after they were read and answered.
			waitFor(t, 10*time.Second, "every frame counted", func() bool {
				for _, lane := range []routing.Lane{routing.Urgent, routing.Small} {
					if compressStats(t, n1, "n2", lane).CompressedFrames != compressStats(t, n2, "n1", lane).CompressedFramesReceived {
						return false
					}
				}
				return compressStats(t, n2, "n1", routing.Large).CompressedFrames == 20
			})
			for _, lane := range []routing.Lane{routing.Urgent, routing.Small} {
				out := compressStats(t, n1, "n2", lane)
				in := compressStats(t, n2, "n1", lane)
				assert.Positive(t, out.CompressedFrames, "%v: n1 compressed", lane)
				assert.Equal(t, out.CompressedFrames, in.CompressedFramesReceived, "%v: n2 read them all", lane)
				assert.Less(t, out.CompressionOut*2, out.CompressionIn, "%v: JSON-like frames shrink by half", lane)
				back := compressStats(t, n2, "n1", lane)
				assert.Positive(t, back.CompressedFrames, "%v: responses compressed", lane)
			}
			largeOut := compressStats(t, n2, "n1", routing.Large)
			assert.EqualValues(t, 20, largeOut.CompressedFrames, "large lane: the small responses, one frame each")
			assert.EqualValues(t, 20, compressStats(t, n1, "n2", routing.Large).CompressedFramesReceived)
			assert.Zero(t, compressStats(t, n1, "n2", routing.Large).CompressedFrames, "large messages go as they are")

			m := collect(t, readers[0])["internode.compression.bytes"]
			small := compressStats(t, n1, "n2", routing.Small)
			assert.EqualValues(t, small.CompressionIn, sumWhere(m, "lane", "small", "stage", "uncompressed"))
			assert.EqualValues(t, small.CompressionOut, sumWhere(m, "lane", "small", "stage", "compressed"))
		})
	}
}

// TestCompressionOneSideOff: a node with compression off does not offer
// it, so a peer with it on sends plain frames, and everything arrives.
func TestCompressionOneSideOff(t *testing.T) {
	for _, offNode := range []int{0, 1} {
		t.Run(fmt.Sprintf("n%d off", offNode+1), func(t *testing.T) {
			c := transporttest.New(t, 2, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
				mode := transport.CompressionOn
				if i == offNode {
					mode = transport.CompressionOff
				}
				cfg.Lanes.Compression = [routing.NumLanes]transport.Compression{mode, mode, mode}
			}})
			compressHandlers(c, make(chan []byte, 1))
			for i := range 20 {
				p := jsonLike(uint64(i), 4<<10)
				resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbCompressEcho, p)
				require.NoError(t, err)
				require.Equal(t, p, resp)
			}
			for _, st := range c.Stats() {
				tot := st.Total()
				assert.Zero(t, tot.CompressedFrames)
				assert.Zero(t, tot.CompressedFramesReceived)
				assert.Zero(t, tot.CompressionSkipped, "no connection compresses")
			}
		})
	}
}

// TestCompressionAutoIsOffOnLoopback: by default, peers on loopback
// addresses exchange plain frames.
func TestCompressionAutoIsOffOnLoopback(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	compressHandlers(c, make(chan []byte, 1))
	for i := range 10 {
		p := jsonLike(uint64(i), 4<<10)
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbCompressEcho, p)
		require.NoError(t, err)
		require.Equal(t, p, resp)
	}
	for _, st := range c.Stats() {
		assert.Zero(t, st.Total().CompressedFrames)
		assert.Zero(t, st.Total().CompressionSkipped)
	}
}

// nonLoopbackIP returns an IPv4 address of this host that is not a
// loopback one, or skips the test.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}

// TestCompressionAutoOverTheNetwork: in the default mode, peers on
// non-loopback addresses compress compressible batches, and on
// incompressible payloads the writer soon stops trying: almost every
// frame goes as it is, and the stats say so.
func TestCompressionAutoOverTheNetwork(t *testing.T) {
	ip := nonLoopbackIP(t)
	c := transporttest.New(t, 2, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
		cfg.ListenAddr = net.JoinHostPort(ip, "0")
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbCompressUrgent: routing.Urgent}
	}})
	compressHandlers(c, make(chan []byte, 1))
	n1 := c.Nodes[0]
	for i := range 300 {
		ctx := ctxTimeout(t, 10*time.Second)
		p := jsonLike(uint64(i), 1<<10)
		resp, err := n1.Request(ctx, c.ID(1), verbCompressEcho, p)
		require.NoError(t, err)
		require.Equal(t, p, resp)
		p = transport.RandomPayload(uint64(i), 1<<10)
		resp, err = n1.Request(ctx, c.ID(1), verbCompressUrgent, p)
		require.NoError(t, err)
		require.Equal(t, p, resp)
	}
	// A writer counts its frames once their write has returned, which may
	// be after the response is back.
	waitFor(t, 10*time.Second, "every frame counted", func() bool {
		return compressStats(t, n1, "n2", routing.Small).CompressedFrames == 300 &&
			compressStats(t, n1, "n2", routing.Urgent).CompressionSkipped == 300
	})
	json := compressStats(t, n1, "n2", routing.Small)
	assert.EqualValues(t, 300, json.CompressedFrames, "every JSON-like frame compressed")
	assert.Less(t, json.CompressionOut*2, json.CompressionIn)
	random := compressStats(t, n1, "n2", routing.Urgent)
	assert.Zero(t, random.CompressedFrames)
	assert.EqualValues(t, 300, random.CompressionSkipped, "every random frame went as it was")
	assert.LessOrEqual(t, random.CompressionMisses, uint64(6), "tried 1 + 16 + 32 + 64 + 128 ...")
	t.Logf("JSON-like: %d frames, %d -> %d bytes; random: %d tries in %d frames",
		json.CompressedFrames, json.CompressionIn, json.CompressionOut, random.CompressionMisses, random.CompressionSkipped)
}

// TestCompressionWithAPeerOfAnOlderWire: a peer that offers no
// capabilities (as builds before compression) gets none in the reply, and
// its responses come back as plain batch frames; one that offers
// CapBatchS2 may send compressed batches and gets compressed responses.
func TestCompressionWithAPeerOfAnOlderWire(t *testing.T) {
	c := transporttest.New(t, 1, transporttest.Options{Tweak: func(_ int, cfg *transport.Config) {
		cfg.Lanes.Compression[routing.Small] = transport.CompressionOn
		cfg.Security.AcceptUnknownPeers = true
	}})
	compressHandlers(c, make(chan []byte, 1))
	for _, offer := range []wire.Capabilities{0, wire.CapBatchS2, 0xFFFF} {
		t.Run(fmt.Sprintf("offers %#x", uint32(offer)), func(t *testing.T) {
			conn := rawConn(t, c.Nodes[0])
			hello := validHello(routing.Small)
			hello.Capabilities, hello.Node = offer, "old"
			reply := handshake(t, conn, hello)
			require.Equal(t, wire.Accepted, reply.Reason)
			assert.Equal(t, offer&(wire.CapBatchS2|wire.CapEagerResponses|wire.CapAcceptorID), reply.Capabilities, "only the offered bits it has")
			if offer&wire.CapAcceptorID != 0 {
				assert.Equal(t, string(c.ID(0)), reply.Message, "the acceptor names itself when asked")
			} else {
				assert.Empty(t, reply.Message, "and only then")
			}

			payload := jsonLike(7, 4<<10)
			h := wire.Header{Flags: wire.FlagExpectsResponse, ID: 1, Verb: uint32(verbCompressEcho),
				CreatedAt: time.Now().UnixNano(), PayloadLength: uint32(len(payload))}
			body := append(wire.AppendHeader(nil, &h), payload...)
			kind := wire.FrameBatch
			if reply.Capabilities&wire.CapBatchS2 != 0 {
				kind, body = wire.FrameBatchS2, wire.AppendBatchS2(nil, body)
			}
			_, err := conn.Write(append(wire.AppendFrameHeader(nil, kind, 0, body), body...))
			require.NoError(t, err)
			for {
				var hdr [wire.FrameHeaderSize]byte
				_, err := io.ReadFull(conn, hdr[:])
				require.NoError(t, err)
				fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
				require.NoError(t, err)
				frame := make([]byte, fh.Length)
				_, err = io.ReadFull(conn, frame)
				require.NoError(t, err)
				require.NoError(t, fh.Verify(frame))
				if fh.Kind == wire.FrameBeat {
					continue
				}
				assert.Equal(t, kind, fh.Kind, "the response comes back as the request went")
				if fh.Kind == wire.FrameBatchS2 {
					n, err := wire.BatchS2Len(frame, wire.DefaultMaxFramePayload)
					require.NoError(t, err)
					plain := make([]byte, n)
					require.NoError(t, wire.DecodeBatchS2(plain, frame))
					frame = plain
				}
				resp, n, err := wire.DecodeHeader(frame, 1<<20)
				require.NoError(t, err)
				assert.Equal(t, uint64(1), resp.ID)
				assert.Equal(t, payload, frame[n:])
				return
			}
		})
	}
}

// TestCompressedFramesMeasureTheReceiveQueue: a lane whose frames all
// arrive compressed has its socket's receive queue measured as a lane of
// plain frames has: ConnStats.QueuesMeasured and RecvQueueMax (and the
// receive-queue metric) on the receiving node, which sends nothing back.
func TestCompressedFramesMeasureTheReceiveQueue(t *testing.T) {
	for _, mode := range []transport.Compression{transport.CompressionOff, transport.CompressionOn} {
		t.Run(mode.String(), func(t *testing.T) {
			c := transporttest.New(t, 2, transporttest.Options{Tweak: func(_ int, cfg *transport.Config) {
				cfg.Lanes.Compression[routing.Small] = mode
			}})
			sunk := make(chan []byte, 100)
			compressHandlers(c, sunk)
			ctx := ctxTimeout(t, 10*time.Second)
			for i := range 20 {
				require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbCompressSink, jsonLike(uint64(i), 4<<10)))
				within(t, sunk, 5*time.Second, "the message")
			}
			waitFor(t, 10*time.Second, "n2 counts the messages", func() bool {
				return compressStats(t, c.Nodes[1], "n1", routing.Small).MessagesReceived == 20
			})
			in := compressStats(t, c.Nodes[1], "n1", routing.Small)
			if mode == transport.CompressionOn {
				require.Positive(t, in.CompressedFramesReceived, "the frames arrived compressed")
			}
			assert.True(t, in.QueuesMeasured, "the receive queue of a lane read by n2 is measured")
		})
	}
}

// TestSilenceInACompressedFrameIsSilence: a peer that goes silent after
// the first bytes of a compressed frame, before its block's length, is
// cut off after Keepalive and counted as silent, as it is in a plain
// frame — not as having sent a truncated frame.
func TestSilenceInACompressedFrameIsSilence(t *testing.T) {
	const keepalive = 2 * time.Second
	for _, kind := range []wire.FrameKind{wire.FrameBatch, wire.FrameBatchS2} {
		t.Run(kind.String(), func(t *testing.T) {
			c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
				cfg.Timeouts.Keepalive = keepalive
				cfg.Security.AcceptUnknownPeers = true
				cfg.Lanes.Compression[routing.Small] = transport.CompressionOn
			})
			conn := rawConn(t, c.Nodes[0])
			hello := validHello(routing.Small)
			hello.Capabilities = wire.CapBatchS2
			reply := handshake(t, conn, hello)
			require.Equal(t, wire.Accepted, reply.Reason)
			require.NotZero(t, reply.Capabilities&wire.CapBatchS2)

			body := oneWayMessage(1, jsonLike(1, 4<<10))
			if kind == wire.FrameBatchS2 {
				body = wire.AppendBatchS2(nil, body)
			}
			frame := append(wire.AppendFrameHeader(nil, kind, 0, body), body...)
			_, err := conn.Write(frame[:wire.FrameHeaderSize+1]) // then nothing
			require.NoError(t, err)
			require.NoError(t, conn.SetDeadline(time.Now().Add(3*keepalive)))
			closedByPeer(t, conn)
			waitFor(t, 5*time.Second, "the connection counted", func() bool {
				return c.Nodes[0].Stats().InboundMalformed > 0
			})
			st := c.Nodes[0].Stats()
			assert.Equal(t, uint64(1), st.BadInput[transport.BadInputSilent], "silent: %v", st.BadInput)
			assert.Zero(t, st.BadInput[transport.BadInputTruncated], "truncated: %v", st.BadInput)
		})
	}
}

// oneWayMessage encodes a one-way message of verbCompressSink.
func oneWayMessage(id uint64, payload []byte) []byte {
	h := wire.Header{ID: id, Verb: uint32(verbCompressSink), CreatedAt: time.Now().UnixNano(), PayloadLength: uint32(len(payload))}
	return append(wire.AppendHeader(nil, &h), payload...)
}

// TestDamagedCompressedBatchLengthIsAChecksumMismatch: a frame's CRC32C
// covers its whole payload, a compressed block's plain_len too (wire/doc.go:
// "damage is caught before anything is decoded"), but the reader reads
// plain_len before it has the payload and refused the frame from it: a
// flipped bit there — one that makes plain_len run on, or clears the
// continuation bit so the block is too long for what is left — was
// counted as a peer that does not speak the format (BadInputTooLarge or
// BadInputMalformed), not as the damage it is (BadInputChecksum), as a
// flipped bit anywhere else in any frame is.
func TestDamagedCompressedBatchLengthIsAChecksumMismatch(t *testing.T) {
	block := wire.AppendBatchS2(nil, oneWayMessage(1, jsonLike(1, 4000)))
	require.GreaterOrEqual(t, block[0], byte(0x80), "plain_len takes two bytes")
	require.Less(t, block[1], byte(0x80))
	for _, tc := range []struct {
		name string
		at   int
		bit  byte
	}{
		{"plain_len runs on", 1, 0x80},
		{"plain_len cut to its first byte", 0, 0x80},
		{"plain_len's top bit", 1, 0x40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, node := badFrameNode(t)
			conn := rawConn(t, node)
			hello := validHello(routing.Small)
			hello.Capabilities = wire.CapBatchS2
			reply := handshake(t, conn, hello)
			require.Equal(t, wire.Accepted, reply.Reason)
			require.NotZero(t, reply.Capabilities&wire.CapBatchS2)

			frame := anyFrameOf(wire.FrameBatchS2, block)
			frame[wire.FrameHeaderSize+tc.at] ^= tc.bit // damaged after it was framed
			_, err := conn.Write(frame)
			require.NoError(t, err)
			closedByPeer(t, conn)
			waitFor(t, 5*time.Second, "the connection counted", func() bool {
				var n uint64
				for _, c := range node.Stats().BadInput {
					n += c
				}
				return n > 0
			})
			st := node.Stats()
			assert.Equal(t, uint64(1), st.BadInput[transport.BadInputChecksum], "checksum: %v", st.BadInput)
			assert.Zero(t, st.BadInput[transport.BadInputTooLarge], "too large: %v", st.BadInput)
			assert.Zero(t, st.BadInput[transport.BadInputMalformed], "malformed: %v", st.BadInput)
			waitFor(t, 5*time.Second, "nothing held", func() bool { return node.Stats().InboundHeld == 0 })
		})
	}
}

// anyFrameOf frames payload as one frame of kind.
func anyFrameOf(kind wire.FrameKind, payload []byte) []byte {
	return append(wire.AppendFrameHeader(nil, kind, 0, payload), payload...)
}
