package certs_test

import (
	"fmt"

	"github.com/internode/internode/internal/certs"
)

func Example() {
	ca, err := certs.NewCA("orders-prod")
	if err != nil {
		panic(err)
	}
	cert, err := ca.Issue("n1") // SANs: internode://orders-prod/n1, 127.0.0.1, localhost
	if err != nil {
		panic(err)
	}
	serverConfig, clientConfig := ca.ServerConfig(cert), ca.ClientConfig(cert)
	_, _ = serverConfig, clientConfig // for tls.NewListener and tls.Dial

	// After a handshake the peer is state.PeerCertificates[0]; here, our own.
	cluster, node, ok := certs.NodeIdentity(cert.Leaf)
	fmt.Println(cluster, node, ok)
	// Output: orders-prod n1 true
}
