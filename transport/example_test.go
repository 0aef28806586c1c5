package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// A one-way message: n1 sends, n2's handler records it. Send returns once
// the message is queued, so the example waits for the handler to report.
func ExampleTransport_Send() {
	c, err := transporttest.Start(2, transporttest.Options{}) // n1 and n2 on loopback
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const verbGossip transport.Verb = 1 // the application numbers its verbs; both ends agree
	type arrival struct {
		from            cluster.NodeID
		payload         string
		expiresAt       time.Time
		handlerDeadline time.Time
	}
	arrived := make(chan arrival, 1)
	n2.Handle(verbGossip, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		// m and m.Payload are reused once the handler returns, so keep
		// copies: string(m.Payload) is one.
		deadline, _ := ctx.Deadline()
		arrived <- arrival{m.From, string(m.Payload), m.ExpiresAt, deadline}
		return nil, nil // a one-way message's results are discarded
	}))

	// The context's deadline becomes the message's expiry: a message still
	// queued, or not yet handled, 5 s from now is dropped and counted
	// (ConnStats.Dropped, DroppedInbound) rather than delivered late. It
	// travels as the time left, so the receiver's clock need not agree
	// with the sender's: there it ends the time the message spent on the
	// wire after the sender's deadline, no more.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n1.Send(ctx, n2.NodeID(), verbGossip, []byte("n1 is alive")); err != nil {
		log.Fatal(err)
	}

	select {
	case a := <-arrived:
		deadline, _ := ctx.Deadline()
		fmt.Printf("%s got %q from %s\n", n2.NodeID(), a.payload, a.from)
		late := a.expiresAt.Sub(deadline) // the time in flight
		fmt.Println("expires at the sender's deadline, give or take the time in flight:", late >= 0 && late < time.Second)
		fmt.Println("the handler's context ends then too:", a.handlerDeadline.Equal(a.expiresAt))
	case <-time.After(5 * time.Second):
		fmt.Println("not delivered")
	}
	// Output:
	// n2 got "n1 is alive" from n1
	// expires at the sender's deadline, give or take the time in flight: true
	// the handler's context ends then too: true
}

// A request waits for the handler's response; a failure on the peer comes
// back as an error to test with errors.Is.
func ExampleTransport_Request() {
	c, err := transporttest.Start(2, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const (
		verbEcho    transport.Verb = 1
		verbMissing transport.Verb = 2 // no node handles it
	)
	n2.Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		// The returned bytes are the response. Never return m.Payload
		// itself: the transport reuses it once the handler returns.
		return append([]byte("echo: "), m.Payload...), nil
	}))

	// Without a deadline Request uses Config.Timeouts.Request (10 s).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n1.Request(ctx, n2.NodeID(), verbEcho, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp)

	_, err = n1.Request(ctx, n2.NodeID(), verbMissing, []byte("hello"))
	fmt.Println("unknown verb:", errors.Is(err, transport.ErrUnknownVerb))
	var remote *transport.RemoteError // the peer answered, with a failure
	fmt.Println("reported by the peer:", errors.As(err, &remote))
	// Output:
	// echo: hello
	// unknown verb: true
	// reported by the peer: true
}

// A ReaderHandler consumes a payload while it arrives: the receiver holds
// one part of a large message at a time, not the whole of it.
func ExampleTransport_HandleReader() {
	c, err := transporttest.Start(2, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const verbRepair transport.Verb = 1
	n2.HandleReader(verbRepair, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		// A large message's handler starts with its first part; each Read
		// waits for the next, and the connection is read no faster than
		// the handler reads. m.Payload is nil.
		sum := crc32.NewIEEE()
		n, err := io.Copy(sum, body)
		if err != nil {
			return nil, err // ErrConnectionReset if the connection broke; n1 gets ErrHandler
		}
		return fmt.Appendf(nil, "%d bytes on the %s lane, crc32 %08x", n, m.Lane, sum.Sum32()), nil
	}))

	// 1 MiB: above Config.Lanes.LargeThreshold (64 KiB), so it takes the
	// large lane and travels in 256 KiB parts.
	payload := bytes.Repeat([]byte("internode "), 1<<20/10+1)[:1<<20]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n1.Request(ctx, n2.NodeID(), verbRepair, payload)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("n2: %s\n", resp)
	fmt.Printf("n1: crc32 %08x\n", crc32.ChecksumIEEE(payload))
	// Output:
	// n2: 1048576 bytes on the large lane, crc32 02bc9da6
	// n1: crc32 02bc9da6
}

// SendFile moves a range of a file to a peer on a connection of its own;
// the receiver writes it to a file of its own, and both ends check it.
func ExampleTransport_SendFile() {
	c, err := transporttest.Start(2, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const verbBootstrap transport.Verb = 1
	received := make(chan string, 1) // the received file's name
	n2.HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		// os.CreateTemp opens the file for reading too, which ReceiveTo
		// needs: it checksums what it wrote against the sender's CRC32C.
		dst, err := os.CreateTemp("", "internode-received-*")
		if err != nil {
			return err // n1's SendFile fails with ErrHandler
		}
		_, err = ft.ReceiveTo(dst)
		dst.Close()
		if err != nil {
			os.Remove(dst.Name())
			return err // ErrIncomplete or ErrCorrupt for n1 too; ErrHandler if dst's disk is full
		}
		received <- dst.Name()
		return nil
	}))

	content := []byte("sstable 000042: keys a..m\n")
	src, err := os.CreateTemp("", "internode-sent-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write(content); err != nil {
		log.Fatal(err)
	}

	// SendFile seeks to the offset itself, and returns once n2 has
	// verified the bytes, after its handler returned.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent, err := n1.SendFile(ctx, n2.NodeID(), verbBootstrap, src, 0, int64(len(content)))
	if err != nil {
		log.Fatal(err)
	}
	name := <-received // already there: the handler returned
	defer os.Remove(name)
	got, err := os.ReadFile(name)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent", sent, "bytes")
	fmt.Println("content matches:", bytes.Equal(got, content))
	// Output:
	// sent 26 bytes
	// content matches: true
}

// A Stream is an ordered byte stream to a peer, a net.Conn: here n2 echoes
// what n1 writes until n1 half-closes.
func ExampleTransport_OpenStream() {
	c, err := transporttest.Start(2, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const verbEchoStream transport.Verb = 1
	n2.HandleStream(verbEchoStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(s, s) // until n1's CloseWrite
		_ = s.CloseWrite()   // then n1 reads io.EOF
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := n1.OpenStream(ctx, n2.NodeID(), verbEchoStream) // ErrUnknownVerb without a handler
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Write from one goroutine, read from another: a write larger than
	// the stream's window waits until the peer's echo is read.
	var writer sync.WaitGroup
	writer.Go(func() {
		for _, line := range []string{"range 1\n", "range 2\n"} {
			if _, err := s.Write([]byte(line)); err != nil {
				return
			}
		}
		_ = s.CloseWrite()
	})
	echoed, err := io.ReadAll(s)
	writer.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", echoed)
	// Output:
	// range 1
	// range 2
}

// Stats counts every message, per peer and lane, on each side. Counters
// move after the bytes do, so read them once they have settled.
func ExampleTransport_Stats() {
	c, err := transporttest.Start(2, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n1, n2 := c.Nodes[0], c.Nodes[1]

	const verbHint transport.Verb = 1
	n2.Handle(verbHint, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		if err := n1.Send(ctx, n2.NodeID(), verbHint, []byte("hint")); err != nil {
			log.Fatal(err)
		}
	}

	// laneStats finds one lane with one peer in a snapshot.
	laneStats := func(t *transport.Transport, peer cluster.NodeID, lane routing.Lane) transport.ConnStats {
		for _, cs := range t.Stats().Conns {
			if cs.Peer == peer && cs.Lane == lane {
				return cs
			}
		}
		return transport.ConnStats{}
	}
	var sent, received transport.ConnStats
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent.MessagesSent < 3 || received.MessagesReceived < 3 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			log.Fatal("counters did not settle")
		}
		sent = laneStats(n1, n2.NodeID(), routing.Small) // small payloads take the small lane
		received = laneStats(n2, n1.NodeID(), routing.Small)
	}
	fmt.Println("n1 sent", sent.MessagesSent, "on the", sent.Lane, "lane")
	fmt.Println("n1 dropped as expired:", sent.Dropped[transport.ReasonExpired]) // Dropped is indexed by Reason
	fmt.Println("n2 received", received.MessagesReceived, "from", received.Peer)
	// Output:
	// n1 sent 3 on the small lane
	// n1 dropped as expired: 0
	// n2 received 3 from n1
}
