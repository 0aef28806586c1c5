package transporttest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// A cluster over the in-memory network: a partition makes requests
// between its two sides fail at their deadline, and healing it lets them
// through again. No root, no sockets.
func ExampleNetwork_Partition() {
	c, err := transporttest.Start(2, transporttest.Options{InMemory: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	const verbEcho transport.Verb = 1
	c.HandleAll(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	request := func(timeout time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("hello"))
		return string(resp), err
	}

	resp, err := request(time.Second)
	fmt.Println("connected:", resp, err)

	c.Network.Partition("n1", "n2")
	_, err = request(100 * time.Millisecond)
	fmt.Println("partitioned, timed out:", errors.Is(err, context.DeadlineExceeded))

	c.Network.Heal("n1", "n2")
	for range 50 { // a request caught in the heal may fail; the next goes
		if resp, err = request(time.Second); err == nil {
			break
		}
	}
	fmt.Println("healed:", resp)
	// Output:
	// connected: hello <nil>
	// partitioned, timed out: true
	// healed: hello
}
