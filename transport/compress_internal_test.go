package transport

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// jsonPayload returns n bytes of JSON-like text: field names repeat within
// and across messages, as in replication traffic.
func jsonPayload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, `{"key":"user:%06d","ts":%d,"op":"put","value":{"name":"alice","city":"Lyon"}},`,
			r.IntN(1e6), 1700000000+r.IntN(1e6))
	}
	return b.Bytes()[:n]
}

// randomPayload returns n incompressible bytes.
func randomPayload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestCompressPolicy: auto mode backs off after frames that do not
// shrink by a tenth, doubling up to maxCompressSkip, and compresses every
// frame again after one that does; on mode keeps any saving; small frames
// are never tried.
func TestCompressPolicy(t *testing.T) {
	p := compressPolicy{auto: true}
	assert.False(t, p.try(minCompressFrame-1), "too small")
	require.True(t, p.try(1000))
	assert.False(t, p.result(1000, 950), "a 5% saving is not worth it")
	for _, skip := range []int{16, 32, 64, 128, 256, 512, 1024, 1024} {
		for range skip {
			require.False(t, p.try(1000))
		}
		require.True(t, p.try(1000), "tried again after %d frames", skip)
		assert.False(t, p.result(1000, 1001))
	}
	for range 1024 {
		require.False(t, p.try(1000))
	}
	require.True(t, p.try(1000))
	assert.True(t, p.result(1000, 900), "a 10% saving is kept")
	assert.True(t, p.try(1000), "and the next frame is tried at once")
	assert.False(t, p.result(1000, 999))
	for range firstCompressSkip {
		require.False(t, p.try(1000), "the back-off starts again from the first step")
	}
	assert.True(t, p.try(1000))

	on := compressPolicy{}
	for range 100 {
		require.True(t, on.try(1000))
		assert.False(t, on.result(1000, 1000), "on mode: no saving, sent as it was")
	}
	assert.True(t, on.result(1000, 999))
}

// decodeFrames returns the batch payloads of frames, decompressing the
// FrameBatchS2 ones.
func decodeFrames(t *testing.T, frames []frame) (kinds []wire.FrameKind, batches []frame) {
	t.Helper()
	for _, f := range frames {
		kinds = append(kinds, f.kind)
		if f.kind == wire.FrameBatchS2 {
			n, err := wire.BatchS2Len(f.payload, wire.DefaultMaxFramePayload)
			require.NoError(t, err)
			body := make([]byte, n)
			require.NoError(t, wire.DecodeBatchS2(body, f.payload))
			f = frame{kind: wire.FrameBatch, payload: body}
		}
		batches = append(batches, f)
	}
	return kinds, batches
}

// queuePayloads queues one-way messages with the given payloads.
func queuePayloads(t *testing.T, q *outQueue, payloads [][]byte) {
	t.Helper()
	for i, p := range payloads {
		id := uint64(i + 1)
		h := wire.Header{ID: id, Verb: 7, PayloadLength: uint32(len(p))}
		_, err := q.push(outItem{id: id, verb: 7}, wire.AppendHeader(nil, &h), p, true)
		require.NoError(t, err)
	}
}

// TestWriteBatchCompresses: with a compressor, the writer core sends each
// batch frame as one S2 block that decodes to the frame it would have
// sent, counts the bytes before and after, and gives the pooled block
// buffers back after the write.
func TestWriteBatchCompresses(t *testing.T) {
	var payloads [][]byte
	for i := range 300 {
		payloads = append(payloads, jsonPayload(uint64(i), 1<<10))
	}
	var q outQueue
	queuePayloads(t, &q, payloads)
	counters := &connCounters{}
	fw := frameWriter{comp: &compressor{counters: counters}}
	var out bytes.Buffer
	written := 0
	for b, _ := q.take(); b != nil; b, _ = q.take() {
		messages, _, err := fw.writeBatch(&out, b, 64<<10, 1, newRecordingSink(1<<30))
		require.NoError(t, err)
		written += messages
		q.release(b)
		assert.Empty(t, fw.comp.held, "block buffers given back")
	}
	require.Equal(t, 300, written)

	kinds, batches := decodeFrames(t, readFrames(t, out.Bytes()))
	var got [][]byte
	for i, f := range batches {
		assert.Equal(t, wire.FrameBatchS2, kinds[i])
		_, ps := messagesIn(t, f)
		got = append(got, ps...)
	}
	assert.Equal(t, payloads, got)
	assert.EqualValues(t, len(kinds), counters.compressedFrames.Load())
	in, wireOut := counters.compressIn.Load(), counters.compressOut.Load()
	assert.Less(t, wireOut*2, in, "JSON-like messages shrink by more than half: %d -> %d", in, wireOut)
	assert.Less(t, out.Len(), int(in)/2)
	t.Logf("%d frames, %d bytes -> %d", len(kinds), in, wireOut)
}

// TestWriteBatchAutoStopsOnIncompressible: in auto mode a writer of
// incompressible payloads tries a few frames, then sends nearly all as
// they are; its counters say so.
func TestWriteBatchAutoStopsOnIncompressible(t *testing.T) {
	counters := &connCounters{}
	fw := frameWriter{comp: &compressor{policy: compressPolicy{auto: true}, counters: counters}}
	sink := newRecordingSink(1 << 30)
	var out bytes.Buffer
	const writes = 2000
	for i := range writes {
		var q outQueue
		queuePayloads(t, &q, [][]byte{randomPayload(uint64(i), 1<<10)})
		b, _ := q.take()
		out.Reset()
		_, _, err := fw.writeBatch(&out, b, 64<<10, 1, sink)
		require.NoError(t, err)
		require.Equal(t, wire.FrameBatch, readFrames(t, out.Bytes())[0].kind)
		q.release(b)
	}
	assert.Zero(t, counters.compressedFrames.Load())
	assert.EqualValues(t, writes, counters.compressSkipped.Load(), "every frame went as it was")
	tries := counters.compressMisses.Load()
	// 1 + 16 + 32 + ... : one try per doubling, then one per 1024 frames.
	assert.LessOrEqual(t, tries, uint64(8), "tries in %d frames", writes)
	assert.GreaterOrEqual(t, tries, uint64(7), "it keeps sampling")
}

// TestWriteBatchCompressedDoesNotAllocate: once warm, compressing a batch
// allocates nothing: block buffers come from the pool.
func TestWriteBatchCompressedDoesNotAllocate(t *testing.T) {
	if raceBuild() {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	var q outQueue
	for i := range 100 {
		queuePayloads(t, &q, [][]byte{jsonPayload(uint64(i), 500)})
	}
	b, _ := q.take()
	fw := frameWriter{comp: &compressor{counters: &connCounters{}}}
	sink := newRecordingSink(1 << 30)
	var out bytes.Buffer
	out.Grow(1 << 20)
	_, _, _ = fw.writeBatch(&out, b, 16<<10, 0, sink)
	allocs := testing.AllocsPerRun(50, func() {
		out.Reset()
		_, _, _ = fw.writeBatch(&out, b, 16<<10, 0, sink)
	})
	assert.LessOrEqual(t, allocs, 0.1, "%v allocations per batch", allocs)
}

// batchS2Frame frames messages as one compressed batch.
func batchS2Frame(messages ...[]byte) []byte {
	body := bytes.Join(messages, nil)
	return anyFrame(wire.FrameBatchS2, 0, wire.AppendBatchS2(nil, body))
}

// TestReaderReadsCompressedBatches: a compressed batch's messages reach
// their handler as a plain one's would, the frame is counted, and while
// a handler holds them the connection is charged the decompressed
// buffer, not the compressed bytes.
func TestReaderReadsCompressedBatches(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	h := newRecorder(true)
	r.tr.Handle(1, h, Ordered())
	big := jsonPayload(1, 100<<10)
	frameBytes := batchS2Frame(oneWay(1, big))
	require.Less(t, len(frameBytes), 40<<10, "it compresses")
	r.write(frameBytes)
	within(t, h.got, 5*time.Second, "the message")
	assert.GreaterOrEqual(t, r.used(), int64(bufpool.Cap(len(oneWay(1, big)))), "the decompressed buffer is charged")
	close(h.gate)
	r.write(batchS2Frame(oneWay(2, []byte("a")), oneWay(3, jsonPayload(2, 5000))))
	r.write(batchFrame(oneWay(4, []byte("plain"))))
	for range 3 {
		within(t, h.got, 5*time.Second, "a message")
	}
	assert.Equal(t, []uint64{1, 2, 3, 4}, h.seen())
	assert.Equal(t, big, h.payloads[0])
	assert.Equal(t, jsonPayload(2, 5000), h.payloads[2])
	assert.EqualValues(t, 2, r.in.compressedFrames.Load())
	eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
}

// TestReaderEndsOnBadCompressedInput: a compressed batch the handshake did
// not agree, a corrupt block under a good checksum, and a block that
// claims more than the frame limit (a decompression bomb) each close the
// connection as bad input, holding nothing; the bomb is refused from its
// first bytes, before anything is allocated for it.
func TestReaderEndsOnBadCompressedInput(t *testing.T) {
	good := wire.AppendBatchS2(nil, oneWay(1, jsonPayload(1, 4000)))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xff
	corrupt[len(corrupt)-1] ^= 0xff
	bomb := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00} // 4 GiB - 1, then nothing
	overLimit := append(wireUvarint(wire.DefaultMaxFramePayload+1), good[3:]...)
	off := func(c *Config) { c.Lanes.Compression[routing.Small] = CompressionOff }
	for _, c := range []struct {
		name  string
		lane  routing.Lane
		tweak func(*Config)
		input []byte
		want  error
	}{
		{"not agreed", routing.Small, off, anyFrame(wire.FrameBatchS2, 0, good), wire.ErrMalformed},
		{"on the large lane", routing.Large, nil, anyFrame(wire.FrameBatchS2, 0, good), wire.ErrMalformed},
		{"corrupt block", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, corrupt), wire.ErrMalformed},
		{"cut block", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, good[:len(good)-7]), wire.ErrMalformed},
		{"empty", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, nil), wire.ErrMalformed},
		{"length only", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, good[:2]), wire.ErrMalformed},
		{"bomb", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, bomb), wire.ErrFrameTooLarge},
		{"above the frame limit", routing.Small, nil, anyFrame(wire.FrameBatchS2, 0, overLimit), wire.ErrFrameTooLarge},
		{"bad message inside", routing.Small, nil, batchS2Frame(oneWay(1, []byte("x"))[:3]), wire.ErrTruncated},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReaderRig(t, c.lane, c.tweak)
			h := newRecorder(false)
			r.tr.Handle(1, h)
			go func() {
				for range r.back {
				}
			}()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			go func() { _, _ = r.far.Write(c.input) }()
			err := r.end()
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, c.want)
			assert.Zero(t, r.used(), "nothing held")
			assert.Empty(t, h.seen(), "nothing handled")
			if c.name == "bomb" {
				assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "nothing allocated for the bomb")
			}
		})
	}
}

func wireUvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// TestNewCompressor: a connection compresses only if its handshake
// agreed it and its lane's mode says so; auto mode not to a loopback
// peer.
func TestNewCompressor(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 7000}
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	tr := coreTransport(t, func(c *Config) {
		c.Lanes.Compression = [routing.NumLanes]Compression{CompressionAuto, CompressionOn, CompressionOff}
	})
	eager, id := wire.CapEagerResponses, wire.CapAcceptorID
	assert.Equal(t, wire.CapBatchS2|eager|id, tr.offers(uint8(routing.Urgent)))
	assert.Equal(t, wire.CapBatchS2|eager|id, tr.offers(uint8(routing.Small)))
	assert.Equal(t, eager|id, tr.offers(uint8(routing.Large)), "off: not offered")
	assert.Equal(t, id, tr.offers(uint8(laneStreams)))
	assert.Equal(t, id, tr.offers(uint8(laneOwnStream)))
	assert.Equal(t, wire.CapFileFlags|id, tr.offers(uint8(laneFile)), "file connections offer their flags, not the lanes' bits")
	var cc connCounters
	for _, c := range []struct {
		lane   routing.Lane
		caps   wire.Capabilities
		remote net.Addr
		want   bool
		auto   bool
	}{
		{routing.Urgent, wire.CapBatchS2, remote, true, true},
		{routing.Urgent, wire.CapBatchS2, loop, false, false},
		{routing.Urgent, wire.CapBatchS2, &net.TCPAddr{IP: net.IPv6loopback}, false, false},
		{routing.Urgent, wire.CapBatchS2, pipeAddr{}, false, false},
		{routing.Urgent, 0, remote, false, false},
		{routing.Small, wire.CapBatchS2, loop, true, false},
		{routing.Small, 0, loop, false, false},
		{routing.Large, wire.CapBatchS2, remote, false, false},
	} {
		comp := tr.newCompressor(c.lane, c.caps, c.remote, &cc)
		assert.Equal(t, c.want, comp != nil, "%v %v %v", c.lane, c.caps, c.remote)
		if comp != nil {
			assert.Equal(t, c.auto, comp.policy.auto)
		}
	}
}

// raceBuild reports whether the test binary was built with -race.
func raceBuild() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestReaderReadsACompressedFrameAtTheLimit: a compressed frame whose
// decoded batch takes all the inbound capacity there is is still read —
// its compressed bytes, held while it arrives and is decoded, are counted
// beyond the limit rather than waited for, which could never come.
func TestReaderReadsACompressedFrameAtTheLimit(t *testing.T) {
	r := newReaderRig(t, routing.Small, limitedTo(250<<10, 256<<10))
	h := newRecorder(false)
	r.tr.Handle(1, h)
	payload := randomPayload(1, 100<<10) // keeps the block large
	payload = append(payload, jsonPayload(1, 150<<10)...)
	r.write(batchS2Frame(oneWay(1, payload)))
	within(t, h.got, 5*time.Second, "the message")
	assert.Equal(t, payload, h.payloads[0])
	eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
}

// TestReaderClosedInACompressedFrameIsNotBadInput: a connection closed
// here (kill: Close, Leave, a peer stopped) while the reader waits for
// the first bytes of a compressed frame's block ends with the close's
// error, as in a plain frame, not as a truncated frame from the peer —
// which serve would count and log as bad input.
func TestReaderClosedInACompressedFrameIsNotBadInput(t *testing.T) {
	for _, kind := range []wire.FrameKind{wire.FrameBatch, wire.FrameBatchS2} {
		t.Run(kind.String(), func(t *testing.T) {
			r := newReaderRig(t, routing.Small, nil)
			r.tr.Handle(1, newRecorder(false))
			body := oneWay(1, jsonPayload(1, 4000))
			if kind == wire.FrameBatchS2 {
				body = wire.AppendBatchS2(nil, body)
			}
			frame := anyFrame(kind, 0, body)
			// A pipe's write returns once the reader has taken every byte:
			// the reader now waits for the rest of the frame.
			r.write(frame[:wire.FrameHeaderSize+1])
			r.ic.kill()
			err := r.end()
			require.Error(t, err)
			assert.NotErrorIs(t, err, wire.ErrTruncated)
			assert.ErrorIs(t, err, io.ErrClosedPipe, "the close's own error")
		})
	}
}

// TestWriteBatchCountsOnlyCompressedFramesSent: a write that fails sends
// no message (each fails with ReasonConnectionReset), and so no frame:
// the compression counters, "frames sent compressed" and their bytes
// (and the internode.compression.bytes metric read from them), count
// none of its frames, compressed or sent as they were.
func TestWriteBatchCountsOnlyCompressedFramesSent(t *testing.T) {
	counters := &connCounters{}
	fw := frameWriter{comp: &compressor{counters: counters}}
	sink := newRecordingSink(1 << 30)
	var q outQueue
	queuePayloads(t, &q, [][]byte{jsonPayload(1, 4<<10), jsonPayload(2, 4<<10), jsonPayload(3, 4<<10)})
	b, _ := q.take()
	sent, _, err := fw.writeBatch(failingWriter{}, b, 5<<10, 1, sink)
	q.release(b)
	require.Error(t, err)
	require.Zero(t, sent)
	require.Len(t, sink.fails, 3, "every message failed")
	assert.Empty(t, fw.comp.held, "block buffers given back")
	assert.Zero(t, counters.compressedFrames.Load(), "frames sent compressed")
	assert.Zero(t, counters.compressIn.Load(), "bytes before")
	assert.Zero(t, counters.compressOut.Load(), "bytes after")

	// Then a write that succeeds counts its frames.
	queuePayloads(t, &q, [][]byte{jsonPayload(4, 4<<10), jsonPayload(5, 4<<10), jsonPayload(6, 4<<10)})
	b, _ = q.take()
	var out bytes.Buffer
	sent, _, err = fw.writeBatch(&out, b, 5<<10, 1, sink)
	q.release(b)
	require.NoError(t, err)
	require.Equal(t, 3, sent)
	kinds, _ := decodeFrames(t, readFrames(t, out.Bytes()))
	assert.EqualValues(t, len(kinds), counters.compressedFrames.Load())
	assert.Positive(t, counters.compressIn.Load())
}

// TestWriteBatchCountsTheCompressedFramesOfACutWrite: a write cut short
// after some of its frames went whole counts those frames' messages as
// sent (writeBatch), and so must count those frames as sent compressed,
// their bytes before and after, and the frames among them that went as
// they were: the compression counters (and the internode.compression.bytes
// metric) counted none of them, as if nothing had been sent.
func TestWriteBatchCountsTheCompressedFramesOfACutWrite(t *testing.T) {
	counters := &connCounters{}
	fw := frameWriter{comp: &compressor{counters: counters}}
	payloads := [][]byte{jsonPayload(1, 4<<10), randomPayload(2, 4<<10), jsonPayload(3, 4<<10), jsonPayload(4, 4<<10)}
	var q outQueue
	queuePayloads(t, &q, payloads)
	b, _ := q.take()
	var whole bytes.Buffer
	_, _, err := (&frameWriter{comp: &compressor{counters: &connCounters{}}}).writeBatch(&whole, b, 5<<10, 1, newRecordingSink(1<<30))
	require.NoError(t, err)
	frames := readFrames(t, whole.Bytes())
	require.Len(t, frames, 4, "a frame a message")
	require.Equal(t, []wire.FrameKind{wire.FrameBatchS2, wire.FrameBatch, wire.FrameBatchS2, wire.FrameBatchS2},
		[]wire.FrameKind{frames[0].kind, frames[1].kind, frames[2].kind, frames[3].kind})
	// The first three frames whole, and one byte of the fourth.
	cut := 3*wire.FrameHeaderSize + len(frames[0].payload) + len(frames[1].payload) + len(frames[2].payload) + 1

	sink := newRecordingSink(1 << 30)
	sent, _, err := fw.writeBatch(&cutWriter{limit: cut}, b, 5<<10, 1, sink)
	q.release(b)
	require.ErrorIs(t, err, errCutWrite)
	require.Equal(t, 3, sent, "the messages of the frames written whole")
	require.Len(t, sink.fails, 1)
	assert.Empty(t, fw.comp.held, "block buffers given back")
	_, first := decodeFrames(t, frames[:1])
	_, third := decodeFrames(t, frames[2:3])
	assert.EqualValues(t, 2, counters.compressedFrames.Load(), "frames sent compressed")
	assert.EqualValues(t, len(first[0].payload)+len(third[0].payload), counters.compressIn.Load(), "bytes before")
	assert.EqualValues(t, len(frames[0].payload)+len(frames[2].payload), counters.compressOut.Load(), "bytes after")
	assert.EqualValues(t, 1, counters.compressSkipped.Load(), "frames sent as they were")
	assert.EqualValues(t, 1, counters.compressMisses.Load(), "of those, tried in vain")
}

// TestReaderRefusesAnOverlongCompressedBlockFromItsHeader: a block longer
// than any S2 block that decodes to its plain_len can be
// (wire.MaxBatchS2Block) is malformed, and is refused from the frame
// header and the block's first bytes — before the reader takes room for
// or allocates a frame that may fill the frame limit. (It read all of it
// first, holding it beyond the limits.) The rest of the frame is read
// only to check its checksum (a damaged plain_len is a checksum
// mismatch), a piece at a time, holding none of it.
func TestReaderRefusesAnOverlongCompressedBlockFromItsHeader(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	h := newRecorder(false)
	r.tr.Handle(1, h)
	go func() {
		for range r.back {
		}
	}()
	// plain_len 1, then 64 KiB: at most 7 bytes can decode to 1 byte.
	block := append([]byte{0x01}, randomPayload(1, 64<<10)...)
	frame := anyFrame(wire.FrameBatchS2, 0, block)
	// A pipe's write returns once the reader has taken every byte: after
	// the second, the reader waits for the rest of the frame, holding
	// nothing for it.
	r.write(frame[:wire.FrameHeaderSize+16])
	r.write(frame[wire.FrameHeaderSize+16 : wire.FrameHeaderSize+17])
	assert.Zero(t, r.used(), "nothing held while the rest comes")
	r.writeAsync(frame[wire.FrameHeaderSize+17:])
	err := r.end()
	require.ErrorIs(t, err, wire.ErrMalformed)
	assert.Zero(t, r.used(), "nothing held")
	assert.Empty(t, h.seen(), "nothing handled")
}
