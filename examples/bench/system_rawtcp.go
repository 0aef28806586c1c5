package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// rawTCP is a hand-rolled transport over one TCP connection (see rawtcp.go
// for the framing). Naive: one Write per message under a mutex, default
// bufio.Reader. Batched: a shared buffer drained by one writer goroutine in
// 64 KiB writes, 256 KiB bufio.Reader. Requests carry an id; the receiver
// echoes on the same connection and a reader goroutine on the client side
// completes the pending call.
type rawTCP struct {
	batched bool
	hooks   Hooks

	ln             net.Listener
	client, server net.Conn
	clientW        frameWriter
	serverW        frameWriter
	readers        sync.WaitGroup // the two reader goroutines

	nextID  atomic.Uint64
	mu      sync.Mutex // guards pending and readErr
	pending map[uint64]chan rawResult
	readErr error // set when the client reader stops; fails new requests
}

type rawResult struct {
	payload []byte
	err     error
}

var _ System = (*rawTCP)(nil)

func newRawTCP(batched bool) *rawTCP {
	return &rawTCP{batched: batched, pending: make(map[uint64]chan rawResult)}
}

func (s *rawTCP) Start(ctx context.Context, h Hooks) error {
	s.hooks = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.ln = ln
	var d net.Dialer
	client, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return err
	}
	server, err := ln.Accept() // the dial above is already in the backlog
	if err != nil {
		client.Close()
		ln.Close()
		return err
	}
	s.client, s.server = client, server
	for _, c := range []net.Conn{client, server} {
		_ = c.(*net.TCPConn).SetNoDelay(true)
	}
	readSize := 4096 // bufio's default
	if s.batched {
		readSize = 256 << 10
		s.clientW, s.serverW = newBatchedWriter(client, batchedHighWater), newBatchedWriter(server, batchedHighWater)
	} else {
		s.clientW, s.serverW = &naiveWriter{conn: client}, &naiveWriter{conn: server}
	}
	s.readers.Add(2)
	go func() {
		defer s.readers.Done()
		_ = readFrames(bufio.NewReaderSize(server, readSize), s.serve)
	}()
	go func() {
		defer s.readers.Done()
		err := readFrames(bufio.NewReaderSize(client, readSize), s.complete)
		s.failPending(err)
	}()
	return nil
}

// serve runs on the receiver's reader goroutine.
func (s *rawTCP) serve(kind byte, id uint64, payload []byte) {
	switch kind {
	case rawOneway:
		s.hooks.OnMessage(payload)
	case rawRequest:
		_ = s.serverW.writeFrame(rawResponse, id, payload) // an error ends the reader too
	}
}

// complete runs on the sender's reader goroutine.
func (s *rawTCP) complete(kind byte, id uint64, payload []byte) {
	if kind != rawResponse {
		return
	}
	s.mu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ok {
		ch <- rawResult{payload: append([]byte(nil), payload...)}
	}
}

func (s *rawTCP) failPending(err error) {
	if err == nil {
		err = errRawClosed
	}
	s.mu.Lock()
	s.readErr = errors.Join(errRawClosed, err)
	for id, ch := range s.pending {
		ch <- rawResult{err: s.readErr}
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

func (s *rawTCP) Send(ctx context.Context, payload []byte) error {
	return s.clientW.writeFrame(rawOneway, 0, payload)
}

func (s *rawTCP) Request(ctx context.Context, payload []byte) ([]byte, error) {
	id := s.nextID.Add(1)
	ch := make(chan rawResult, 1)
	s.mu.Lock()
	if s.readErr != nil {
		s.mu.Unlock()
		return nil, s.readErr
	}
	s.pending[id] = ch
	s.mu.Unlock()
	if err := s.clientW.writeFrame(rawRequest, id, payload); err != nil {
		s.forget(id)
		return nil, err
	}
	select {
	case res := <-ch:
		return res.payload, res.err
	case <-ctx.Done():
		s.forget(id)
		return nil, ctx.Err()
	}
}

func (s *rawTCP) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *rawTCP) Close() error {
	if s.ln == nil {
		return nil
	}
	s.ln.Close()
	s.client.Close()
	s.server.Close()
	s.clientW.close()
	s.serverW.close()
	s.readers.Wait()
	s.ln = nil
	return nil
}
