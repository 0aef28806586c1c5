package transport_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// Two nodes over mutual TLS, each with a certificate naming it
// (internode://orders-prod/n1, .../n2) and trusting the cluster's CA alone.
// In production the certificate, key and CA come from files: MutualTLS.
func ExampleNewMutualTLS() {
	ca, err := transporttest.NewCA("orders-prod") // a throwaway CA, for the example
	if err != nil {
		log.Fatal(err)
	}
	c, err := transporttest.Start(2, transporttest.Options{ClusterName: "orders-prod",
		Tweak: func(i int, cfg *transport.Config) {
			cert, err := ca.Issue(cfg.NodeID)
			if err != nil {
				log.Fatal(err)
			}
			if cfg.Security.TLS, err = transport.NewMutualTLS(cert, ca.Pool()); err != nil {
				log.Fatal(err)
			}
		}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	const verbEcho transport.Verb = 1
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return append([]byte("echo: "), m.Payload...), nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("over TLS"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp)
	// Output: echo: over TLS
}
