package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// /ready answers 503 until the node has reached its peer, 200 after; /health
// shows the peer's lanes as JSON.
func TestHealthEndpoints(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	const verbEcho transport.Verb = 1
	c.HandleAll(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	var current *transport.Transport // nil: the node is down
	srv := httptest.NewServer(healthHandler(func() *transport.Transport { return current }))
	defer srv.Close()

	status, body := get(t, srv.URL+"/ready")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body, "node down")
	status, _ = get(t, srv.URL+"/health")
	assert.Equal(t, http.StatusServiceUnavailable, status)

	current = c.Nodes[0]
	status, body = get(t, srv.URL+"/ready")
	assert.Equal(t, http.StatusServiceUnavailable, status, "the peer was never contacted")
	assert.Contains(t, body, "1 unknown")
	status, _ = get(t, srv.URL+"/ready?rule=quorum")
	assert.Equal(t, http.StatusServiceUnavailable, status, "one of two is not a majority")
	status, body = get(t, srv.URL+"/ready?rule=most")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "all or quorum")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("hi"))
	require.NoError(t, err)
	for _, rule := range []string{"", "?rule=all", "?rule=quorum"} {
		status, body = get(t, srv.URL+"/ready"+rule)
		assert.Equal(t, http.StatusOK, status, rule)
		assert.Contains(t, body, "1 of 1 peers up", rule)
	}

	status, body = get(t, srv.URL+"/health")
	require.Equal(t, http.StatusOK, status)
	var view struct {
		Node  string          `json:"node"`
		Up    int             `json:"up"`
		Ready map[string]bool `json:"ready"`
		Peers []struct {
			Peer   string `json:"peer"`
			Status string `json:"status"`
			Lanes  []struct {
				Lane      string    `json:"lane"`
				State     string    `json:"state"`
				Since     time.Time `json:"since"`
				LastRead  time.Time `json:"last_read"`
				LastError *string   `json:"last_error"`
			} `json:"lanes"`
		} `json:"peers"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &view), body)
	assert.Equal(t, "n1", view.Node)
	assert.Equal(t, 1, view.Up)
	assert.Equal(t, map[string]bool{"all": true, "quorum": true}, view.Ready)
	require.Len(t, view.Peers, 1)
	p := view.Peers[0]
	assert.Equal(t, "n2", p.Peer)
	assert.Equal(t, "up", p.Status)
	require.Len(t, p.Lanes, 3)
	assert.Equal(t, "urgent", p.Lanes[0].Lane)
	assert.Equal(t, "idle", p.Lanes[0].State)
	assert.True(t, p.Lanes[0].Since.IsZero(), "never dialled: left out")
	assert.Equal(t, "small", p.Lanes[1].Lane)
	assert.Equal(t, "connected", p.Lanes[1].State)
	assert.False(t, p.Lanes[1].LastRead.IsZero())
	assert.Nil(t, p.Lanes[1].LastError, "no error: left out")

	// The peer stops: the loss shows at once, and the node is not ready.
	require.NoError(t, c.Nodes[1].Close())
	require.Eventually(t, func() bool {
		status, _ := get(t, srv.URL+"/ready")
		return status == http.StatusServiceUnavailable
	}, 5*time.Second, 5*time.Millisecond)
	_, body = get(t, srv.URL+"/ready")
	assert.Contains(t, body, "1 down")
}
