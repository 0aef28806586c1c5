package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Connection kinds beyond the message lanes, sent in the handshake's lane
// byte. They are part of the wire format.
const (
	laneStreams = routing.NumLanes     // 3: a stream session (smux)
	laneFile    = routing.NumLanes + 1 // 4: one file transfer
	numKinds    = routing.NumLanes + 2
)

// dial connects to peer id and handshakes for a connection of the given
// kind (a routing.Lane, laneStreams or laneFile).
func (t *Transport) dial(ctx context.Context, id cluster.NodeID, kind uint8) (net.Conn, error) {
	member, ok := t.cfg.Membership.Lookup(id)
	if !ok {
		return nil, ErrUnknownPeer
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeouts.Dial)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", member.Addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		if err := tcp.SetNoDelay(true); err != nil {
			nc.Close()
			return nil, err
		}
		if kind < routing.NumLanes {
			if err := t.cfg.Lanes.Sockets[kind].apply(tcp); err != nil {
				nc.Close()
				return nil, fmt.Errorf("socket options: %w", err)
			}
		}
	}
	// Cancelling ctx interrupts the handshakes too, not only the dial.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if t.cfg.Security.TLS != nil {
		tc := tls.Client(nc, t.cfg.Security.TLS.Client)
		hsCtx, cancel := context.WithTimeout(ctx, t.cfg.Timeouts.Handshake)
		err := tc.HandshakeContext(hsCtx)
		cancel()
		if err == nil {
			if verr := t.verifyPeer(tc.ConnectionState(), id); verr != nil {
				err = &HandshakeError{Reason: wire.IdentityMismatch, Message: verr.Error()}
			}
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: TLS: %w", ErrRefused, err)
		}
		nc = tc
	}
	if err := t.handshake(nc, kind); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// handshake sends the Hello and reads the Reply, within HandshakeTimeout.
func (t *Transport) handshake(nc net.Conn, kind uint8) error {
	if err := nc.SetDeadline(time.Now().Add(t.cfg.Timeouts.Handshake)); err != nil {
		return err
	}
	hello := wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion, Lane: kind,
		Cluster: t.cfg.ClusterName, Node: string(t.cfg.NodeID)}
	out, err := wire.AppendHello(make([]byte, 0, 64), &hello)
	if err != nil {
		return err
	}
	if _, err := nc.Write(out); err != nil {
		return err
	}
	buf := make([]byte, wire.MaxHandshakeSize)
	raw, err := wire.ReadHandshake(nc, buf)
	if errors.Is(err, wire.ErrBadMagic) || errors.Is(err, wire.ErrChecksum) || errors.Is(err, wire.ErrHandshakeTooLarge) {
		// The peer speaks something else (a TLS alert, say): retrying
		// will not help.
		return fmt.Errorf("%w: the peer does not speak internode: %w", ErrRefused, err)
	}
	if err != nil {
		return fmt.Errorf("reading handshake reply: %w", err)
	}
	reply, err := wire.DecodeReply(raw)
	if err != nil {
		return fmt.Errorf("%w: decoding handshake reply: %w", ErrRefused, err)
	}
	if reply.Reason != wire.Accepted {
		return &HandshakeError{Reason: reply.Reason, Message: reply.Message}
	}
	if reply.Version < wire.MinVersion || reply.Version > wire.MaxVersion {
		return fmt.Errorf("%w: the peer chose version %d, not one of %d to %d", ErrRefused,
			reply.Version, wire.MinVersion, wire.MaxVersion)
	}
	return nc.SetDeadline(time.Time{})
}
