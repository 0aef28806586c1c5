package wire_test

// Cross-checks of the package against the codec written from doc.go
// alone in spec_codec_test.go: streams, file transfers, compressed
// batches, and a differential fuzz target over every decoder.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

func TestSpecStreams(t *testing.T) {
	// The example drawn in doc.go.
	opener := []byte{0x14, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0}
	var b []byte
	b = wire.AppendStreamOpen(b, 20)
	b = append(wire.AppendStreamChunkHeader(b, 5), "hello"...)
	b = wire.AppendStreamChunkHeader(b, 0)
	assert.Equal(t, opener, b)
	acceptor := []byte{0, 0, 0, 0, 2, 'o', 'k', 0, 0, 0, 0}
	b = wire.AppendStreamAccept(nil)
	b = append(wire.AppendStreamChunkHeader(b, 2), "ok"...)
	assert.Equal(t, acceptor, wire.AppendStreamChunkHeader(b, 0))

	assert.Equal(t, []byte{4}, wire.AppendStreamRefuse(nil, wire.FailureOverloaded))
	code, refused := wire.ParseStreamStatus(200)
	assert.True(t, refused)
	assert.Equal(t, wire.FailureCode(200), code, "unknown codes are passed up as they are")
	_, refused = wire.ParseStreamStatus(0)
	assert.False(t, refused)

	rng := rand.New(rand.NewPCG(9, 10))
	for range 2000 {
		verb := uint32(randUint(rng, 32))
		enc := specAppendUvarint(nil, uint64(verb))
		require.Equal(t, enc, wire.AppendStreamOpen(nil, verb))
		bad := mutate(rng, enc)
		want, wantN, specErr := specDecodeStreamOpen(bad)
		got, gotN, pkgErr := wire.DecodeStreamOpen(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, [2]int{int(want), wantN}, [2]int{int(got), gotN})
			read, err := wire.ReadStreamOpen(bytes.NewReader(bad))
			require.NoError(t, err)
			require.Equal(t, want, read)
		}

		n := rng.IntN(wire.MaxStreamChunk + 2)
		hdr := binary.BigEndian.AppendUint32(nil, uint32(n))
		gotLen, err := wire.ParseStreamChunkHeader(hdr)
		if n > wire.MaxStreamChunk {
			require.ErrorIs(t, err, wire.ErrMalformed)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, n, gotLen)
		require.Equal(t, hdr, wire.AppendStreamChunkHeader(nil, n))
	}
	_, err := wire.ParseStreamChunkHeader([]byte{0xff, 0xff, 0xff, 0xff})
	assert.ErrorIs(t, err, wire.ErrMalformed)
	_, _, err = wire.DecodeStreamOpen([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	assert.ErrorIs(t, err, wire.ErrMalformed, "longer than MaxStreamOpenSize")
}

func TestSpecFileTransfer(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	buf := make([]byte, wire.MaxFileHeaderSize)
	require.EqualValues(t, specCapFileFlags, wire.CapFileFlags)
	require.EqualValues(t, specFileUnchecked, wire.FileUnchecked)
	for i := range 4000 {
		agreed := i%2 == 1
		var caps wire.Capabilities
		f := specFile{verb: randUint(rng, 32), id: randUint(rng, 64), createdAt: int64(rng.Uint64()),
			ttl: randUint(rng, 63) % (wire.MaxTTL + 1), length: randUint(rng, 64)}
		if agreed {
			caps = wire.CapFileFlags
			f.flags = uint64(rng.IntN(2)) * specFileUnchecked
		}
		enc := specAppendFileHeader(f)
		require.LessOrEqual(t, len(enc), wire.MaxFileHeaderSize)
		pkg := wire.AppendFileHeader(nil, &wire.FileHeader{Verb: uint32(f.verb), ID: f.id,
			CreatedAt: f.createdAt, TTL: int64(f.ttl), Length: f.length, Flags: wire.FileFlags(f.flags)})
		require.Equal(t, enc, pkg)
		bad := mutate(rng, enc)
		if rng.IntN(2) == 0 && len(bad) >= 2 {
			binary.BigEndian.PutUint16(bad, uint16(len(bad)-2))
		}
		want, specErr := specDecodeFileHeader(bad, agreed)
		got, pkgErr := wire.DecodeFileHeader(bad, caps)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, want, specFileOf(got))
			read, err := wire.ReadFileHeader(bytes.NewReader(bad), buf, caps)
			require.NoError(t, err)
			require.Equal(t, got, read)
		}
	}
	// Flags are read only where the handshake agreed them; unknown bits
	// are malformed.
	flagged := specAppendFileHeader(specFile{verb: 1, length: 2, flags: specFileUnchecked})
	_, err := wire.DecodeFileHeader(flagged, 0)
	assert.ErrorIs(t, err, wire.ErrMalformed, "flags without CapFileFlags")
	got, err := wire.DecodeFileHeader(flagged, wire.CapFileFlags)
	require.NoError(t, err)
	assert.Equal(t, wire.FileUnchecked, got.Flags)
	_, err = wire.DecodeFileHeader(specAppendFileHeader(specFile{verb: 1, length: 2, flags: 2}), wire.CapFileFlags)
	assert.ErrorIs(t, err, wire.ErrMalformed, "an undefined flag")
	explicitZero := append(specAppendFileHeader(specFile{verb: 1, length: 2}), 0)
	explicitZero[1]++
	got, err = wire.DecodeFileHeader(explicitZero, wire.CapFileFlags)
	require.NoError(t, err, "flags 0 written out")
	assert.Zero(t, got.Flags)

	_, err = wire.ReadFileHeader(bytes.NewReader([]byte{0, 63}), buf, wire.CapFileFlags)
	assert.ErrorIs(t, err, wire.ErrMalformed, "header_len above 62")

	// A FileResult: result_len (2) and a Failure; empty is success.
	assert.Equal(t, []byte{0, 0}, wire.AppendFileResult(nil, nil))
	res := append([]byte{0, 4}, specAppendFailure(nil, 7, "ab")...)
	assert.Equal(t, res, wire.AppendFileResult(nil, &wire.Failure{Code: wire.FailureCorrupt, Message: "ab"}))
	fail, err := wire.ReadFileResult(bytes.NewReader(res))
	require.NoError(t, err)
	assert.Equal(t, &wire.Failure{Code: wire.FailureCorrupt, Message: "ab"}, fail)
	fail, err = wire.ReadFileResult(bytes.NewReader([]byte{0, 0}))
	require.NoError(t, err)
	assert.Nil(t, fail)
}

func TestSpecBatchS2(t *testing.T) {
	// The example drawn in doc.go.
	block := []byte{0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03}
	n, err := wire.BatchS2Len(block, wire.DefaultMaxFramePayload)
	require.NoError(t, err)
	dst := make([]byte, n)
	require.NoError(t, wire.DecodeBatchS2(dst, block))
	assert.Equal(t, "abcabcabcabc", string(dst))

	rng := rand.New(rand.NewPCG(13, 14))
	for range 300 {
		batch := make([]byte, 1+rng.IntN(3000))
		for i := range batch {
			batch[i] = "ab"[rng.IntN(2)] // compressible
		}
		// Ours, literals alone, is valid and within the bound.
		ours := specAppendS2Literals(nil, batch)
		require.LessOrEqual(t, len(ours), specMaxS2Block(len(batch)))
		require.Equal(t, specMaxS2Block(len(batch)), wire.MaxBatchS2Block(len(batch)))
		n, err := wire.BatchS2Len(ours, wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		dst := make([]byte, n)
		require.NoError(t, wire.DecodeBatchS2(dst, ours))
		require.Equal(t, batch, dst)
		// Theirs starts with plain_len as we read it.
		theirs := wire.AppendBatchS2(nil, batch)
		specN, err := specS2Len(theirs, wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		require.Equal(t, len(batch), specN)
		require.LessOrEqual(t, len(theirs), specMaxS2Block(len(batch)))
		// A peer with the reference S2 library reads theirs, and writes
		// with a Snappy encoder what the package reads.
		plain, err := s2.Decode(nil, theirs)
		require.NoError(t, err)
		require.Equal(t, batch, plain)
		snappy := s2.EncodeSnappy(nil, batch)
		dst = make([]byte, len(batch))
		require.NoError(t, wire.DecodeBatchS2(dst, snappy))
		require.Equal(t, batch, dst)
	}

	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"plain_len 0":         {[]byte{0}, wire.ErrMalformed},
		"not minimal":         {[]byte{0x81, 0x00, 0, 0, 0}, wire.ErrMalformed},
		"above the limit":     {specAppendUvarint(nil, 1001), wire.ErrFrameTooLarge},
		"six bytes of prefix": {[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, wire.ErrFrameTooLarge},
		"truncated":           {[]byte{0x80}, wire.ErrTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := wire.BatchS2Len(tc.b, 1000)
			assert.ErrorIs(t, err, tc.want)
			_, err = specS2Len(tc.b, 1000)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	// The costliest valid block: each byte a literal of its own whose
	// length takes four bytes more (tag 63), 6 bytes a byte, is at the
	// bound and decodes; a copy with a 4-byte offset yields a byte for 5.
	costly := specAppendUvarint(nil, 3)
	for _, c := range []byte("xyz") {
		costly = append(costly, 63<<2, 0, 0, 0, 0, c)
	}
	require.Len(t, costly, wire.MaxBatchS2Block(3))
	dst = make([]byte, 3)
	require.NoError(t, wire.DecodeBatchS2(dst, costly))
	assert.Equal(t, "xyz", string(dst))
	copy4 := append(specAppendUvarint(nil, 3), 1<<2, 'x', 'y', 0<<2|3, 2, 0, 0, 0)
	require.NoError(t, wire.DecodeBatchS2(dst, copy4))
	assert.Equal(t, "xyx", string(dst))

	// A block that decodes to fewer or more bytes than plain_len.
	for _, b := range [][]byte{{0x04, 0x08, 'a', 'b', 'c'}, {0x02, 0x08, 'a', 'b', 'c'}} {
		n, err := wire.BatchS2Len(b, 1000)
		require.NoError(t, err)
		assert.ErrorIs(t, wire.DecodeBatchS2(make([]byte, n), b), wire.ErrMalformed, "% x", b)
	}
}

// FuzzSpecDecoders feeds the same bytes to a decoder of the package and
// to its counterpart in spec_codec_test.go (the first byte picks which)
// and wants the same verdict and, when both accept, the same values.
func FuzzSpecDecoders(f *testing.F) {
	f.Add(append([]byte{0}, specAppendHello(specHello{min: 3, max: 3, lane: 2, cluster: "c", node: "n1"})...))
	f.Add(append([]byte{1}, specAppendReply(specReply{reason: 7, message: "busy"})...))
	f.Add(append([]byte{2}, specAppendFrame(nil, 1, 7, nil)...))
	f.Add(append([]byte{3}, specAppendMsg(nil, specMsg{flags: 0x19, id: 1 << 40, verb: 300, ttl: 5, params: []byte{1, 'k', 1, 'v'}, payloadLen: 9})...))
	f.Add(append([]byte{4}, specAppendFailure(nil, 4, "full")...))
	f.Add([]byte{5, 0x80, 0x80, 0x80, 0x80, 0x0f})
	f.Add(append([]byte{6, 0}, specAppendFileHeader(specFile{verb: 9, id: 1, ttl: 1 << 40, length: 1 << 33})...))
	f.Add(append([]byte{6, 1}, specAppendFileHeader(specFile{verb: 9, id: 1, length: 5, flags: specFileUnchecked})...))
	f.Add([]byte{7, 0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03})
	f.Add(append([]byte{7}, wire.AppendBatchS2(nil, bytes.Repeat([]byte("abcd"), 100))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		b := data[1:]
		check := func(specErr, pkgErr error, same func() bool) {
			t.Helper()
			if specErrName(specErr) != specErrName(pkgErr) {
				t.Fatalf("% x: spec %v, package %v", b, specErr, pkgErr)
			}
			if specErr == nil && !same() {
				t.Fatalf("% x: decoded differently", b)
			}
		}
		switch data[0] % 8 {
		case 0:
			want, specErr := specDecodeHello(b)
			got, pkgErr := wire.DecodeHello(b)
			check(specErr, pkgErr, func() bool {
				return want == specHello{got.MinVersion, got.MaxVersion, got.Lane, uint32(got.Capabilities), got.Cluster, got.Node}
			})
		case 1:
			want, specErr := specDecodeReply(b)
			got, pkgErr := wire.DecodeReply(b)
			check(specErr, pkgErr, func() bool {
				return want == specReply{got.Version, uint8(got.Reason), uint32(got.Capabilities), got.Message}
			})
		case 2:
			want, specErr := specParseFrameHeader(b, 1000)
			got, pkgErr := wire.ParseFrameHeader(b, 1000)
			check(specErr, pkgErr, func() bool {
				return want == specFrameHeader{got.Length, uint8(got.Kind), got.Stream, got.Checksum}
			})
		case 3:
			want, wantN, specErr := specDecodeMsg(b, 1<<20)
			got, gotN, pkgErr := wire.DecodeHeader(b, 1<<20)
			check(specErr, pkgErr, func() bool {
				return wantN == gotN && want.flags == uint8(got.Flags) && want.id == got.ID &&
					want.verb == uint64(got.Verb) && want.createdAt == got.CreatedAt &&
					want.ttl == uint64(got.TTL) && bytes.Equal(want.params, got.Params) &&
					want.payloadLen == uint64(got.PayloadLength)
			})
		case 4:
			code, msg, specErr := specDecodeFailure(b)
			got, pkgErr := wire.DecodeFailure(b)
			check(specErr, pkgErr, func() bool { return got == wire.Failure{Code: wire.FailureCode(code), Message: msg} })
		case 5:
			verb, n, specErr := specDecodeStreamOpen(b)
			gotVerb, gotN, pkgErr := wire.DecodeStreamOpen(b)
			check(specErr, pkgErr, func() bool { return verb == gotVerb && n == gotN })
		case 6:
			// The second byte's low bit says whether CapFileFlags was agreed.
			if len(b) == 0 {
				return
			}
			agreed := b[0]&1 == 1
			caps := wire.Capabilities(0)
			if agreed {
				caps = wire.CapFileFlags
			}
			b = b[1:]
			want, specErr := specDecodeFileHeader(b, agreed)
			got, pkgErr := wire.DecodeFileHeader(b, caps)
			check(specErr, pkgErr, func() bool { return want == specFileOf(got) })
		case 7:
			const limit = 1 << 16
			n, specErr := specS2Len(b, limit)
			gotN, pkgErr := wire.BatchS2Len(b, limit)
			check(specErr, pkgErr, func() bool { return n == gotN })
			if specErr != nil {
				return
			}
			// The package decodes exactly what the reference S2 decoder
			// decodes to plain_len bytes.
			ref, refErr := s2.Decode(nil, b)
			got := make([]byte, n)
			pkgErr = wire.DecodeBatchS2(got, b)
			if refOK := refErr == nil && len(ref) == n; refOK != (pkgErr == nil) {
				t.Fatalf("% x: reference S2 decoder %v (%d bytes), package %v", b, refErr, len(ref), pkgErr)
			}
			if pkgErr == nil && !bytes.Equal(ref, got) {
				t.Fatalf("% x: decoded differently from the reference", b)
			}
			if pkgErr == nil && len(b) > wire.MaxBatchS2Block(n) {
				t.Fatalf("% x: a block longer than MaxBatchS2Block decoded", b)
			}
		}
	})
}

// The Read* functions read one item and nothing past it, and refuse an
// oversized length from the length alone.
func TestSpecReadersStopAtTheirItem(t *testing.T) {
	tail := []byte{0xAA, 0xBB}
	file := specAppendFileHeader(specFile{verb: 1, id: 2, length: 3})
	r := bytes.NewReader(append(append([]byte(nil), file...), tail...))
	_, err := wire.ReadFileHeader(r, make([]byte, wire.MaxFileHeaderSize), wire.CapFileFlags)
	require.NoError(t, err)
	assert.Equal(t, len(tail), r.Len())

	r = bytes.NewReader(append(specAppendUvarint(nil, 1<<31), tail...))
	verb, err := wire.ReadStreamOpen(r)
	require.NoError(t, err)
	assert.Equal(t, uint32(1<<31), verb)
	assert.Equal(t, len(tail), r.Len())

	// body_len 2000: refused after the 6 bytes that carry it.
	big := []byte{0x49, 0x4e, 0x4f, 0x44, 0x07, 0xd0}
	_, err = wire.ReadHandshake(io.MultiReader(bytes.NewReader(big), iotest.ErrReader(errors.New("read past body_len"))),
		make([]byte, wire.MaxHandshakeSize))
	assert.ErrorIs(t, err, wire.ErrHandshakeTooLarge)
}

// specFileOf is the package's FileHeader as the spec codec's.
func specFileOf(h wire.FileHeader) specFile {
	return specFile{uint64(h.Verb), h.ID, h.CreatedAt, uint64(h.TTL), h.Length, uint64(h.Flags)}
}
