package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/internode/internode/transport"
)

// healthView is what GET /health answers: the transport's Health and
// whether it is ready by each rule.
type healthView struct {
	transport.Health
	Ready map[string]bool `json:"ready"`
}

// healthHandler serves the health of the transport that current returns
// (nil while the node is down):
//
//	GET /health            200, the view as JSON (503 while the node is down)
//	GET /ready[?rule=R]    200 "ready" or 503 "not ready: …"; R is all
//	                       (every peer up, the default) or quorum
//	                       (a majority of the members up, this node included)
//
// A load balancer or an orchestrator's readiness probe asks /ready; an
// operator reads /health.
func healthHandler(current func() *transport.Transport) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		tr := current()
		if tr == nil {
			http.Error(w, "node down", http.StatusServiceUnavailable)
			return
		}
		view := healthView{Health: tr.Health(), Ready: map[string]bool{}}
		for _, rule := range []transport.ReadyRule{transport.ReadyAll, transport.ReadyQuorum} {
			view.Ready[rule.String()] = view.Health.Ready(rule)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(view)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		rule, ok := readyRule(r.URL.Query().Get("rule"))
		if !ok {
			http.Error(w, "rule must be all or quorum", http.StatusBadRequest)
			return
		}
		tr := current()
		if tr == nil {
			http.Error(w, "not ready: node down", http.StatusServiceUnavailable)
			return
		}
		h := tr.Health()
		if !h.Ready(rule) {
			http.Error(w, fmt.Sprintf("not ready (%s): %d of %d peers up, %d down, %d unknown",
				rule, h.Up, len(h.Peers), h.Down, h.Unknown), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ready (%s): %d of %d peers up\n", rule, h.Up, len(h.Peers))
	})
	return mux
}

// readyRule parses the rule query parameter; empty means all.
func readyRule(s string) (transport.ReadyRule, bool) {
	switch s {
	case "", "all":
		return transport.ReadyAll, true
	case "quorum":
		return transport.ReadyQuorum, true
	}
	return 0, false
}

// serveHealth adds /health and /ready to the metrics server.
func (m *metricsServer) serveHealth(current func() *transport.Transport, out io.Writer) {
	if m == nil {
		return
	}
	h := healthHandler(current)
	m.mux.Handle("GET /health", h)
	m.mux.Handle("GET /ready", h)
	fmt.Fprintf(out, "health: http://%s/health, readiness: http://%s/ready\n", m.ln.Addr(), m.ln.Addr())
}

// transportNow returns the node's running transport, nil while it is down.
func (n *simNode) transportNow() *transport.Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current == nil {
		return nil
	}
	return n.current.t
}
