package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// TestUncheckedFilesArriveWhole: a file sent Unchecked arrives whole
// through ReceiveTo and through Reader, its FileTransfer says Unchecked,
// and both sides count it as any other; a file sent without the option
// is checked as before.
func TestUncheckedFilesArriveWhole(t *testing.T) {
	c := newCluster(t, 2, nil)
	type received struct {
		unchecked bool
		data      []byte
		err       error
	}
	got := make(chan received, 1)
	const toFile, toReader transport.Verb = 31, 32
	c.Nodes[1].HandleFile(toFile, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
		if err != nil {
			return err
		}
		defer dst.Close()
		_, err = ft.ReceiveTo(dst)
		data, _ := os.ReadFile(dst.Name())
		got <- received{ft.Unchecked, data, err}
		return err
	}))
	c.Nodes[1].HandleFile(toReader, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		data, err := io.ReadAll(ft.Reader())
		got <- received{ft.Unchecked, data, err}
		return err
	}))
	src, data := tempFile(t, 3<<20+17)
	for _, verb := range []transport.Verb{toFile, toReader} {
		for _, unchecked := range []bool{true, false} {
			var opts []transport.FileOption
			if unchecked {
				opts = append(opts, transport.Unchecked())
			}
			n, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verb, src, 5, int64(len(data)-5), opts...)
			require.NoError(t, err, "verb %d, unchecked %v", verb, unchecked)
			assert.Equal(t, int64(len(data)-5), n)
			r := <-got
			require.NoError(t, r.err)
			assert.Equal(t, unchecked, r.unchecked, "verb %d", verb)
			assert.True(t, bytes.Equal(data[5:], r.data), "verb %d, unchecked %v: the bytes differ", verb, unchecked)
		}
	}
	assert.Equal(t, uint64(4), c.Nodes[0].Stats().FilesSent)
	assert.Equal(t, uint64(4), c.Nodes[1].Stats().FilesReceived)
	assert.Zero(t, c.Nodes[1].Stats().BadInput[transport.BadInputMalformed])
}

// fileAcceptor accepts one file connection on ln as a peer that offers
// caps, reads the header and the bytes it announces, answers success,
// and returns the header and whatever the sender sent after the bytes
// before it closed its end.
func fileAcceptor(t *testing.T, ln net.Listener, caps wire.Capabilities) (wire.FileHeader, []byte) {
	t.Helper()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	hello, err := wire.DecodeHello(raw)
	require.NoError(t, err)
	agreed := hello.Capabilities & caps
	_, err = conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion, Capabilities: agreed}))
	require.NoError(t, err)
	h, err := wire.ReadFileHeader(conn, make([]byte, wire.MaxFileHeaderSize), agreed)
	require.NoError(t, err, "a header this acceptor can read")
	_, err = conn.Write(wire.AppendFileResult(nil, nil)) // ready
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, conn, int64(h.Length))
	require.NoError(t, err)
	// Answer at once: a sender with a trailer to send writes it before it
	// reads this, so the trailer is what is left to read.
	_, err = conn.Write(wire.AppendFileResult(nil, nil))
	require.NoError(t, err)
	rest, err := io.ReadAll(conn)
	require.NoError(t, err)
	return h, rest
}

// TestUncheckedSenderSendsNoTrailer: with Unchecked, the sender flags its
// header FileUnchecked and sends nothing after the bytes; to a peer that
// does not agree wire.CapFileFlags (an earlier build) it sends an
// unflagged header and the checksum, as it always did.
func TestUncheckedSenderSendsNoTrailer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		caps        wire.Capabilities
		wantFlags   wire.FileFlags
		wantTrailer bool
	}{
		{"peer takes flags", wire.CapFileFlags, wire.FileUnchecked, false},
		{"peer without flags", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 1, nil)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			c.Members.Add(cluster.Member{ID: "fake", Addr: ln.Addr().String()})
			src, data := tempFile(t, 100_000)
			sent := make(chan error, 1)
			go func() {
				_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), "fake", verbBootstrap, src, 0, int64(len(data)), transport.Unchecked())
				sent <- err
			}()
			h, rest := fileAcceptor(t, ln, tc.caps)
			require.NoError(t, <-sent)
			assert.Equal(t, tc.wantFlags, h.Flags)
			assert.Equal(t, uint64(len(data)), h.Length)
			if !tc.wantTrailer {
				assert.Empty(t, rest, "nothing after the bytes")
				return
			}
			sum := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
			assert.Equal(t, binary.BigEndian.AppendUint32(nil, sum), rest, "the checksum after the bytes")
		})
	}
}

// dialFileAs handshakes on the file lane as node id offering caps, and
// returns the connection and the capabilities the node agreed.
func dialFileAs(t *testing.T, addr, id string, caps wire.Capabilities) (net.Conn, wire.Capabilities) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	hello := validHello(4)
	hello.Capabilities, hello.Node = caps, id
	reply := handshake(t, conn, hello)
	require.Equal(t, wire.Accepted, reply.Reason)
	return conn, reply.Capabilities
}

// TestFileFlagsNeedTheCapability: a node offers wire.CapFileFlags on a
// file connection, and takes an Unchecked transfer's bytes with no
// trailer after them; a header with flags on a connection that did not
// agree the capability, or with a flag the node does not know, is bad
// input, counted and refused.
func TestFileFlagsNeedTheCapability(t *testing.T) {
	c := newCluster(t, 2, nil)
	handled := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		_, err := io.Copy(io.Discard, ft.Reader())
		handled <- err
		return err
	}))
	addr, id := c.Nodes[1].Addr().String(), string(c.ID(0))
	header := func(flags wire.FileFlags, length uint64) []byte {
		return wire.AppendFileHeader(nil, &wire.FileHeader{Verb: uint32(verbBootstrap), ID: 1,
			CreatedAt: time.Now().UnixNano(), Length: length, Flags: flags})
	}

	conn, agreed := dialFileAs(t, addr, id, wire.CapFileFlags|wire.CapBatchS2)
	require.Equal(t, wire.CapFileFlags, agreed, "a file connection agrees flags, and nothing else")
	data := bytes.Repeat([]byte("unchecked "), 1000)
	_, err := conn.Write(append(header(wire.FileUnchecked, uint64(len(data))), data...))
	require.NoError(t, err)
	failure, err := wire.ReadFileResult(conn) // ready
	require.NoError(t, err)
	require.Nil(t, failure)
	require.NoError(t, <-handled, "the bytes, and no trailer after them")
	failure, err = wire.ReadFileResult(conn)
	require.NoError(t, err)
	assert.Nil(t, failure, "the transfer succeeded")
	assert.Equal(t, uint64(1), c.Nodes[1].Stats().FilesReceived)

	for _, tc := range []struct {
		name  string
		offer wire.Capabilities
		flags wire.FileFlags
	}{
		{"flags without the capability", 0, wire.FileUnchecked},
		{"an undefined flag", wire.CapFileFlags, 2},
	} {
		before := c.Nodes[1].Stats().BadInput[transport.BadInputMalformed]
		conn, _ := dialFileAs(t, addr, id, tc.offer)
		_, err := conn.Write(header(tc.flags, 10))
		require.NoError(t, err, tc.name)
		// The node counts before it closes its end.
		_, err = wire.ReadFileResult(conn)
		assert.Error(t, err, "%s: closed without an answer", tc.name)
		assert.Equal(t, before+1, c.Nodes[1].Stats().BadInput[transport.BadInputMalformed], tc.name)
	}
	select {
	case err := <-handled:
		t.Fatalf("a handler ran for a bad header: %v", err)
	default:
	}
}

// fileModes are SendFile's two ways of sending: checked in chunks, and
// Unchecked, which each side moves in one call.
var fileModes = []struct {
	name string
	opts []transport.FileOption
}{
	{"checked", nil},
	{"unchecked", []transport.FileOption{transport.Unchecked()}},
}

// TestFileReceiverCutsOffASilentSender: the sender's bytes stop after 8
// MiB of 32 (a relay stops passing them on and keeps the connection
// open). The receiver's ReceiveTo, which an Unchecked transfer makes one
// splice of the whole range, still gives up within two of its Keepalive
// (a read that moved bytes by its deadline is followed by one that moves
// none), and so does SendFile, within Timeouts.Write and its verdict's
// wait.
func TestFileReceiverCutsOffASilentSender(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			const keepalive = 2 * time.Second
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Timeouts.Keepalive = keepalive
				cfg.Timeouts.Write = keepalive
			})
			got := receiveToFiles(t, c.Nodes[1])
			silent, unblock := context.WithCancel(context.Background())
			addr := tamperProxy(t, c.Nodes[1].Addr().String(), func(total int64, b []byte) ([]byte, bool) {
				if total >= 8<<20 {
					<-silent.Done()
					return nil, false
				}
				return b, true
			})
			t.Cleanup(unblock) // before the relay's cleanup, which waits for it
			c.Members.Add(cluster.Member{ID: c.ID(1), Addr: addr})
			src, data := tempFile(t, 32<<20)
			began := time.Now()
			sent := sendFileAsync(context.Background(), c, src, len(data), mode.opts...)
			select {
			case res := <-got:
				assert.Contains(t, res, "sent nothing", "the receiver's handler saw the silence")
				assert.Less(t, time.Since(began), 4*keepalive+time.Second, "cut off within two Keepalives of the silence")
			case <-time.After(30 * time.Second):
				t.Fatal("the receiver still waited 30 s after its sender fell silent, with Keepalive 2 s")
			}
			select {
			case err := <-sent:
				assert.Error(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("SendFile still blocked 30 s after its bytes stopped, with Timeouts.Write 2 s")
			}
		})
	}
}

// TestUncheckedFileOverTLSOutlastingAWrite: an unchecked transfer over TLS
// that takes longer than Timeouts.Write to send, to a receiver that reads
// steadily all along. On plain TCP a sendfile call whose deadline finds
// bytes moved is followed by another; over TLS the whole range went in one
// buffered copy under one Timeouts.Write, so the transfer failed as if the
// receiver had taken nothing for that long (a 3 GB SSTable over a 1 Gbit/s
// link, with the default 30 s).
func TestUncheckedFileOverTLSOutlastingAWrite(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		for _, unchecked := range []bool{false, true} {
			t.Run(fmt.Sprintf("tls=%v/unchecked=%v", overTLS, unchecked), func(t *testing.T) {
				var o transporttest.Options
				if overTLS {
					o.CA = newCA(t, "test")
				}
				o.Tweak = func(i int, cfg *transport.Config) {
					cfg.Timeouts.Write = time.Second
					cfg.Files.Chunk = 256 << 10
				}
				c := transporttest.New(t, 2, o)
				got := make(chan error, 1)
				c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
					// About 8 MB/s: never silent for more than a few
					// milliseconds, but slower than the sender.
					tick := time.NewTicker(8 * time.Millisecond)
					defer tick.Stop()
					r := ft.Reader()
					buf := make([]byte, 64<<10)
					var err error
					for err == nil {
						<-tick.C
						_, err = io.ReadFull(r, buf)
					}
					if err == io.EOF {
						err = nil
					}
					got <- err
					return err
				}))
				src, data := tempFile(t, 24<<20) // a multiple of 64 KiB
				var opts []transport.FileOption
				if unchecked {
					opts = append(opts, transport.Unchecked())
				}
				began := time.Now()
				n, err := c.Nodes[0].SendFile(ctxTimeout(t, 30*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)), opts...)
				require.NoError(t, err, "a receiver reading all along, %d bytes sent in %v", n, time.Since(began))
				require.NoError(t, <-got)
			})
		}
	}
}
