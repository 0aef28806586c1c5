package transport_test

import (
	"context"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// readmeTLS is the README's TLS snippet, verbatim between the markers
// (TestREADMETLSSnippet checks it), in a function that gives it cfg.
func readmeTLS(cfg *transport.Config) error {
	// README begin
	tlsConfig, err := transport.MutualTLS("node.pem", "node-key.pem", "ca.pem")
	if err != nil {
		return err
	}
	cfg.Security.TLS = tlsConfig // every lane, stream and file transfer: mutual TLS 1.3

	// After replacing the files (on SIGHUP, say), put them in force at once;
	// the transport also re-reads them every minute on its own.
	if err := tlsConfig.Credentials.Reload(); err != nil {
		log.Printf("TLS files not reloaded; the previous stay in force: %v", err)
	}
	// README end
	return nil
}

// TestREADMETLSSnippet runs the README's snippet, as it is written there,
// on two nodes whose files sit in their own directories, and checks that
// they talk over mutual TLS.
func TestREADMETLSSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	source, err := os.ReadFile("tls_readme_test.go")
	require.NoError(t, err)
	require.Contains(t, string(readme), "```go\n"+snippetOf(t, string(source))+"```\n", "the README shows readmeTLS")

	ca := newCA(t, "orders-prod")
	members := cluster.NewStatic()
	nodes := make([]*transport.Transport, 2)
	for i := range nodes {
		dir := t.TempDir()
		cert := issue(t, ca, nodeID(i), time.Hour, time.Hour)
		tlsFiles{cert: filepath.Join(dir, "node.pem"), key: filepath.Join(dir, "node-key.pem"), ca: filepath.Join(dir, "ca.pem")}.write(t, &cert, ca)

		cfg := transport.DefaultConfig()
		cfg.NodeID, cfg.ClusterName, cfg.ListenAddr, cfg.Membership = nodeID(i), "orders-prod", "127.0.0.1:0", members
		cfg.Telemetry.Logger = quietLogger
		t.Chdir(dir) // the snippet's paths are relative
		require.NoError(t, readmeTLS(&cfg))
		require.NotNil(t, cfg.Security.TLS)
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { tr.Close() })
		tr.Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			return m.Payload, nil
		}))
		tr.Start()
		members.Add(cluster.Member{ID: cfg.NodeID, Addr: tr.Addr().String()})
		nodes[i] = tr
	}
	resp, err := nodes[0].Request(ctxTimeout(t, 5*time.Second), "n2", verbEcho, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(resp))
	require.Positive(t, nodes[1].Stats().Total().MessagesReceived)
	require.Zero(t, nodes[1].Stats().InboundRefused)
}

// snippetOf returns the lines of source between the README markers, one
// tab of indentation removed.
func snippetOf(t *testing.T, source string) string {
	t.Helper()
	_, rest, ok := strings.Cut(source, "\t// README begin\n")
	require.True(t, ok)
	body, _, ok := strings.Cut(rest, "\t// README end\n")
	require.True(t, ok)
	var out strings.Builder
	for line := range strings.Lines(body) {
		out.WriteString(strings.TrimPrefix(line, "\t"))
	}
	return out.String()
}
