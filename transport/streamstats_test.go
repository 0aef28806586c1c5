package transport_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/transport"
)

// streamCounts is what Stats says of a node's streams.
type streamCounts struct {
	opened, openFailures, accepted, refused uint64
	bytesSent, bytesReceived                uint64
}

func streamCountsOf(n *transport.Transport) streamCounts {
	st := n.Stats()
	return streamCounts{st.StreamsOpened, st.StreamOpenFailures, st.StreamsAccepted, st.StreamsRefused,
		st.StreamBytesSent, st.StreamBytesReceived}
}

// streamAndFileMetricsAgree checks that the node's stream and file
// metrics say what its Stats say.
func streamAndFileMetricsAgree(t *testing.T, node *transport.Transport, reader *metric.ManualReader) {
	t.Helper()
	st := node.Stats()
	got := collect(t, reader)
	for _, m := range []struct {
		name, key, value string
		want             uint64
	}{
		{"internode.streams", "outcome", "opened", st.StreamsOpened},
		{"internode.streams", "outcome", "open_failed", st.StreamOpenFailures},
		{"internode.streams", "outcome", "accepted", st.StreamsAccepted},
		{"internode.streams", "outcome", "refused", st.StreamsRefused},
		{"internode.streams.bytes", "direction", "sent", st.StreamBytesSent},
		{"internode.streams.bytes", "direction", "received", st.StreamBytesReceived},
		{"internode.files", "outcome", "sent", st.FilesSent},
		{"internode.files", "outcome", "send_failed", st.FileSendFailures},
		{"internode.files", "outcome", "received", st.FilesReceived},
		{"internode.files", "outcome", "receive_failed", st.FileReceiveFailures},
		{"internode.files.bytes", "direction", "sent", st.FileBytesSent},
		{"internode.files.bytes", "direction", "received", st.FileBytesReceived},
	} {
		assert.Equal(t, int64(m.want), sumWhere(got[m.name], m.key, m.value), "%s %s=%s", m.name, m.key, m.value)
	}
}

// Every OpenStream is counted once, as opened or failed, on its node;
// every stream a peer opens, once, as accepted or refused, on the peer's;
// and the bytes the streams' users wrote and read, on both kinds of
// stream. An operator watching a snapshot or a repair sees it there.
func TestStreamsAreCountedOnceEach(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := "session"
		var opts []transport.StreamOption
		if own {
			name, opts = "own connection", []transport.StreamOption{transport.OwnConnection()}
		}
		t.Run(name, func(t *testing.T) {
			readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
				cfg.Streams.MaxPerPeer = 2
				if i == 1 {
					cfg.Streams.MaxPerPeer = 1 // the receiver's limit below the opener's
				}
			})
			opener, acceptor := c.Nodes[0], c.Nodes[1]
			hold := newGate()
			defer hold.open()
			acceptor.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				_, _ = io.Copy(s, s) // echo until the opener half-closes
				_ = s.CloseWrite()
				_ = hold.wait(ctx) // keeps its place on the receiver
			}))
			ctx := ctxTimeout(t, 10*time.Second)

			s, err := opener.OpenStream(ctx, c.ID(1), verbRepair, opts...)
			require.NoError(t, err)
			want := makePayload(0, 1, 100<<10)
			go func() {
				_, _ = s.Write(want)
				_ = s.CloseWrite()
			}()
			got, err := io.ReadAll(s)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got), "echoed bytes differ")
			require.NoError(t, s.Close())

			_, err = opener.OpenStream(ctx, c.ID(1), 999, opts...) // refused: unknown verb
			require.ErrorIs(t, err, transport.ErrUnknownVerb)
			_, err = opener.OpenStream(ctx, c.ID(1), verbRepair, opts...) // refused: the first's handler holds its place
			require.ErrorIs(t, err, transport.ErrOverloaded)
			x, err := opener.OpenStream(ctx, "nobody", verbRepair, opts...) // no such node: never reaches a peer
			require.Error(t, err)
			require.Nil(t, x)

			n := uint64(len(want))
			assert.Equal(t, streamCounts{opened: 1, openFailures: 3, bytesSent: n, bytesReceived: n}, streamCountsOf(opener))
			want1 := streamCounts{accepted: 1, refused: 2, bytesSent: n, bytesReceived: n}
			waitFor(t, 5*time.Second, "the acceptor counts its streams", func() bool { return streamCountsOf(acceptor) == want1 })
			assert.Equal(t, want1, streamCountsOf(acceptor))
			streamAndFileMetricsAgree(t, opener, readers[0])
			streamAndFileMetricsAgree(t, acceptor, readers[1])
		})
	}
}
