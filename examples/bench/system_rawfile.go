package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

// rawFile transfers files over plain TCP, a connection per file as
// internode's SendFile does: the sender writes the length (u64 BE), then
// the bytes; the receiver writes them into its temp file from the start and
// answers one byte, 0, once it has them all. No checksum (internode's
// CRC32C is part of its cost).
//
// raw-sendfile hands both ends to the kernel: (*net.TCPConn).ReadFrom of a
// limited *os.File is sendfile(2), (*os.File).ReadFrom of a limited
// *net.TCPConn is splice(2). buffered-copy hides those fast paths and copies
// through a 32 KiB user-space buffer at each end, with read(2) and
// write(2).
type rawFile struct {
	buffered bool
	ln       net.Listener
	served   sync.WaitGroup // the accept loop and the connections it serves

	fileMu   sync.Mutex // serializes received files into recvFile
	recvFile *os.File   // unlinked temp file; nil until the first transfer

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

var (
	_ System         = (*rawFile)(nil)
	_ fileOnlySystem = (*rawFile)(nil)
)

const rawFileBuffer = 32 << 10

func newRawFile(buffered bool) *rawFile {
	return &rawFile{buffered: buffered, conns: make(map[net.Conn]struct{})}
}

func (s *rawFile) fileOnly() {}

func (s *rawFile) Start(ctx context.Context, h Hooks) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.ln = ln
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(conn, true) {
				conn.Close()
				return
			}
			s.served.Add(1)
			go func() {
				defer s.served.Done()
				defer s.track(conn, false)
				defer conn.Close()
				s.receive(conn)
			}()
		}
	}()
	return nil
}

// track adds or removes an accepted connection, so that Close can close it;
// false once closed.
func (s *rawFile) track(conn net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, conn)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[conn] = struct{}{}
	return true
}

// receive serves one transfer.
func (s *rawFile) receive(conn net.Conn) {
	var hdr [8]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[:]))
	got, err := s.receiveInto(conn, n)
	if err != nil || got != n {
		return // the sender sees the connection close without an answer
	}
	_, _ = conn.Write([]byte{0})
}

func (s *rawFile) receiveInto(conn net.Conn, n int64) (int64, error) {
	// The bench sends one file at a time; the lock keeps concurrent ones
	// from interleaving in the one temp file anyway.
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.recvFile == nil {
		f, err := createUnlinkedTemp("bench-rawfile-recv-")
		if err != nil {
			return 0, err
		}
		s.recvFile = f
	}
	f := s.recvFile
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	src := io.LimitReader(conn, n)
	if s.buffered {
		return io.CopyBuffer(writerOnly{f}, readerOnly{src}, make([]byte, rawFileBuffer))
	}
	return f.ReadFrom(src) // splice(2) from the socket
}

func (s *rawFile) SendFile(ctx context.Context, f *os.File, n int64) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ln.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := conn.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	src := io.LimitReader(f, n)
	var sent int64
	if s.buffered {
		sent, err = io.CopyBuffer(writerOnly{conn}, readerOnly{src}, make([]byte, rawFileBuffer))
	} else {
		sent, err = conn.(*net.TCPConn).ReadFrom(src) // sendfile(2)
	}
	if err != nil {
		return err
	}
	if sent != n {
		return fmt.Errorf("raw file: sent %d of %d bytes", sent, n)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("raw file: no answer from the receiver: %w", err)
	}
	return nil
}

func (s *rawFile) Send(context.Context, []byte) error { return errFileOnly }

func (s *rawFile) Request(context.Context, []byte) ([]byte, error) { return nil, errFileOnly }

func (s *rawFile) Close() error {
	if s.ln == nil {
		return nil
	}
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.served.Wait()
	s.ln = nil
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.recvFile == nil {
		return nil
	}
	err := s.recvFile.Close()
	s.recvFile = nil
	return err
}

// readerOnly and writerOnly hide ReadFrom and WriteTo from io.CopyBuffer,
// so that it really copies through its buffer.
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }
