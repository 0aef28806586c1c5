package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
)

// Buffers of raw-tcp-mesh, per connection. The writer's pending bytes stop
// just short of one 64 KiB Write, so that a full buffer of small frames is
// one write(2).
const (
	rawMeshPending    = batchedChunk - 256
	rawMeshReadBuffer = 64 << 10
)

// rawMesh is the batched plain-TCP mesh that saturate compares internode
// with: what a hand-rolled transport with per-connection buffers does. One
// TCP connection per ordered pair of nodes, dialled by the sender; senders
// append frames (rawtcp.go's framing) to the connection's batchedWriter,
// whose one writer goroutine writes whatever is pending whenever it is free
// (so batches grow with the load) and which makes senders wait while 64
// KiB are pending; on the receiving side one reader goroutine per
// connection decodes frames through a 64 KiB bufio.Reader and calls
// deliver. No limits but those buffers: TCP's flow control pushes back.
type rawMesh struct {
	listeners []net.Listener
	conns     []net.Conn         // both ends of every connection
	writers   [][]*batchedWriter // [from][to]; nil on the diagonal
	readers   sync.WaitGroup
}

var _ mesh = (*rawMesh)(nil)

func newRawMesh() *rawMesh { return &rawMesh{} }

func (m *rawMesh) start(n int, deliver func(to int, payload []byte)) error {
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			m.close()
			return err
		}
		m.listeners = append(m.listeners, ln)
	}
	m.writers = make([][]*batchedWriter, n)
	for from := range n {
		m.writers[from] = make([]*batchedWriter, n)
		for to := range n {
			if from == to {
				continue
			}
			client, err := net.Dial("tcp", m.listeners[to].Addr().String())
			if err != nil {
				m.close()
				return err
			}
			m.conns = append(m.conns, client)
			server, err := m.listeners[to].Accept() // the dial above is in the backlog
			if err != nil {
				m.close()
				return err
			}
			m.conns = append(m.conns, server)
			m.writers[from][to] = newBatchedWriter(client, rawMeshPending)
			m.readers.Add(1)
			go func() {
				defer m.readers.Done()
				_ = readFrames(bufio.NewReaderSize(server, rawMeshReadBuffer), func(_ byte, _ uint64, payload []byte) {
					deliver(to, payload)
				}) // ends when close closes the connection
			}()
		}
	}
	return nil
}

func (m *rawMesh) send(_ context.Context, from, to int, payload []byte) error {
	return m.writers[from][to].writeFrame(rawOneway, 0, payload)
}

func (m *rawMesh) close() error {
	var err error
	for _, ln := range m.listeners {
		err = errors.Join(err, ln.Close())
	}
	for _, c := range m.conns {
		_ = c.Close() // unblocks writers and readers
	}
	for _, row := range m.writers {
		for _, w := range row {
			if w != nil {
				w.close()
			}
		}
	}
	m.readers.Wait()
	m.listeners, m.conns, m.writers = nil, nil, nil
	return err
}
