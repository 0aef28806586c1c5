// Package certs makes a throwaway certificate authority and node
// certificates, for tests and for the simulator's -tls mode. It is not a
// PKI: keys live in memory and certificates expire after Validity.
//
// Each certificate names its node with a URI SAN, internode://<cluster>/<node>
// (IdentityURI), and is valid for both ends of a connection. The transport
// checks node identity against that URI, not against a host name: peers dial
// each other by whatever address membership gives, and the claim that matters
// is "this is node n2 of cluster orders-prod".
//
// How to use it:
//
//  1. ca, err := certs.NewCA("orders-prod") — once per test or cluster.
//  2. cert, err := ca.Issue("n1") for each node; the certificate also carries
//     DNS and IP SANs for the hosts given (default "127.0.0.1", "localhost").
//  3. Listen with tls.NewListener(ln, ca.ServerConfig(cert)) and dial with
//     tls.Dial(network, addr, ca.ClientConfig(cert)). Both ends require a
//     certificate issued by the CA for the CA's cluster, with TLS 1.3.
//  4. After the handshake, NodeIdentity(state.PeerCertificates[0]) gives the
//     peer's cluster and node; the transport must check that the node equals
//     the one claimed in its own handshake (or the one it meant to dial).
//
// Why the client does not verify a host name: ClientConfig sets
// InsecureSkipVerify, which only turns off crypto/tls's built-in check, and
// installs VerifyConnection, which verifies the chain against the CA itself
// (with the server-auth key usage and the current time) and requires the URI
// SAN of the CA's cluster. TLS 1.3 has already proved that the server holds
// the certificate's key. This keeps verification independent of the address
// dialed, so ServerName can be anything, including empty.
package certs
