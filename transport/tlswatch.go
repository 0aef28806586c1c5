package transport

import (
	"time"
)

// expiryWarningEvery is how often the expiry warning repeats for one
// certificate.
const expiryWarningEvery = time.Hour

// tlsLoop re-reads changed credential files and checks the certificate's
// expiry every ReloadInterval, until the transport closes.
func (t *Transport) tlsLoop() {
	tick := time.NewTicker(t.tls.cfg.ReloadInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.closed:
			return
		case <-tick.C:
			t.checkTLS(true)
		}
	}
}

// checkTLS reloads the credential files if they changed (when reload is
// set) and warns about a certificate that expires soon or names another
// node. It runs in New and then only on tlsLoop.
func (t *Transport) checkTLS(reload bool) {
	st := t.tls
	if creds := st.cfg.Credentials; reload && creds != nil {
		changed, err := creds.reloadIfChanged()
		switch {
		case err != nil:
			t.logs.warn(logKey{other: logTLSReload}, "internode: TLS credentials not reloaded; those in force stay", "err", err)
		case changed:
			leaf := creds.Certificate()
			t.log.Info("internode: TLS credentials reloaded", "serial", leaf.SerialNumber, "expires", leaf.NotAfter)
			t.checkOwnIdentity()
		}
	}
	leaf := st.leaf()
	if leaf == nil || st.cfg.ExpiryWarning < 0 {
		return
	}
	now := time.Now()
	left := leaf.NotAfter.Sub(now)
	if left > st.cfg.ExpiryWarning || leaf == st.warnedLeaf && now.Sub(st.warned) < expiryWarningEvery {
		return
	}
	st.warned, st.warnedLeaf = now, leaf
	t.log.Warn("internode: this node's TLS certificate expires soon; peers refuse it once expired",
		"expires", leaf.NotAfter, "left", left.Round(time.Second), "serial", leaf.SerialNumber)
}

// checkOwnIdentity warns when the node's certificate names another node:
// every peer would refuse it. The node still starts (it fails closed), so
// a rotation can fix it without a restart.
func (t *Transport) checkOwnIdentity() {
	leaf := t.tls.leaf()
	if leaf == nil {
		return
	}
	if err := checkIdentity(leaf, t.cfg.ClusterName, t.cfg.NodeID); err != nil {
		t.log.Warn("internode: this node's TLS certificate does not name it; peers will refuse it", "node", t.cfg.NodeID, "err", err)
	}
}

// certificateExpiry returns the time left before the node's certificate
// expires (negative once expired), and false when it is unknown.
func (t *Transport) certificateExpiry() (time.Duration, bool) {
	if t.tls == nil {
		return 0, false
	}
	leaf := t.tls.leaf()
	if leaf == nil {
		return 0, false
	}
	return time.Until(leaf.NotAfter), true
}
