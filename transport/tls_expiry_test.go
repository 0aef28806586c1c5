package transport_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/transport"
)

// TestTLSCertificateExpiry: the seconds left on the node's own
// certificate are a metric, and a warning is logged when they fall below
// ExpiryWarning, at start or after a rotation.
func TestTLSCertificateExpiry(t *testing.T) {
	ca := newCA(t, "test")
	start := func(tlsConfig *transport.TLSConfig) (*metric.ManualReader, *capturedLogs) {
		reader, logs := metric.NewManualReader(), &capturedLogs{}
		cfg := validConfig()
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		cfg.Telemetry.Logger = logs.logger()
		cfg.Security.TLS = tlsConfig
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		t.Cleanup(func() { tr.Close() })
		return reader, logs
	}
	const warning = "certificate expires soon"

	reader, logs := start(mutualTLS(t, issue(t, ca, "n1", time.Hour, 2*time.Hour), ca.Pool()))
	metrics := collect(t, reader)
	require.Contains(t, metrics, "internode.tls.certificate.expiry")
	assert.InDelta(t, (2 * time.Hour).Seconds(), sumWhere(metrics["internode.tls.certificate.expiry"]), 60)
	assert.Contains(t, logs.String(), warning, "2 h left, under the default 7 days")

	quiet := mutualTLS(t, issue(t, ca, "n1", time.Hour, 2*time.Hour), ca.Pool())
	quiet.ExpiryWarning = time.Hour
	_, logs = start(quiet)
	assert.NotContains(t, logs.String(), warning, "2 h left, over the threshold")

	reader, _ = start(mutualTLS(t, issue(t, ca, "n1", 2*time.Hour, -time.Hour), ca.Pool()))
	assert.InDelta(t, -time.Hour.Seconds(), sumWhere(collect(t, reader)["internode.tls.certificate.expiry"]), 60,
		"negative once expired")

	reader, _ = start(nil)
	assert.NotContains(t, collect(t, reader), "internode.tls.certificate.expiry", "no TLS, no certificate")

	// A rotation to a certificate close to its end is noticed by polling.
	files := newTLSFiles(t)
	cert := issue(t, ca, "n1", time.Hour, 30*24*time.Hour)
	files.write(t, &cert, ca)
	polled, err := transport.MutualTLS(files.cert, files.key, files.ca)
	require.NoError(t, err)
	polled.ReloadInterval = time.Millisecond
	reader, logs = start(polled)
	assert.NotContains(t, logs.String(), warning)
	cert = issue(t, ca, "n1", time.Hour, time.Hour)
	files.write(t, &cert)
	waitFor(t, 5*time.Second, "the warning", func() bool { return strings.Contains(logs.String(), warning) })
	assert.Contains(t, logs.String(), "TLS credentials reloaded")
	assert.InDelta(t, time.Hour.Seconds(), sumWhere(collect(t, reader)["internode.tls.certificate.expiry"]), 60)
}
