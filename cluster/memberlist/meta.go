package memberlist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/wire"
)

// Node metadata, gossiped by memberlist with every alive message, carries the
// node's transport address and, once it leaves, a flag saying so. Its layout
// is part of the gossip format that nodes of different versions must
// understand:
//
//	+---------+---------------------+--------------------+--------+-----------------+
//	| version | address length      | transport address  | flags  | reserved        |
//	| 1 byte  | uvarint (1-2 bytes) | "host:port", UTF-8 | 1 byte | (later versions)|
//	+---------+---------------------+--------------------+--------+-----------------+
//
// The flags byte is present from version 2 on. Bit 0 (metaFlagLeaving) says
// that the node is leaving the cluster gracefully; the other bits are
// reserved and ignored. A member writes version 1 (no flags byte) and, in
// Membership.Leave, version 2 with the leaving bit, gossiped just before
// memberlist's leave message, so that the others can tell a graceful
// departure from a failure and do not try to reconnect to it: memberlist
// itself does not tell its EventDelegate which of the two it saw
// (ml.Node.State is always StateAlive in NotifyLeave).
//
// Readers accept any version >= 1 and ignore trailing bytes, so later
// versions may only append fields; a version 1 reader therefore reads a
// version 2 record's address and ignores its flags. Version 0, a truncated
// record, or a version >= 2 record without its flags byte is malformed; such
// nodes are ignored.
const (
	metaVersion      = 1 // a member's record
	metaVersionFlags = 2 // the first version with the flags byte

	// metaFlagLeaving marks the record a node gossips while leaving.
	metaFlagLeaving = 1 << 0

	// MaxTransportAddrLen is the longest transport address, in bytes, that
	// fits in memberlist's node metadata (ml.MetaMaxSize, 512 bytes) with
	// the version, a two-byte length and the flags byte.
	MaxTransportAddrLen = ml.MetaMaxSize - 1 - 2 - 1
)

var (
	errMalformedMeta = errors.New("memberlist: malformed node metadata")
	errEmptyName     = errors.New("memberlist: empty node name")
	errLongName      = fmt.Errorf("memberlist: node name longer than the %d bytes a handshake carries", wire.MaxNameLength)
)

// nodeMeta is the content of a node's metadata.
type nodeMeta struct {
	addr    string // transport address
	leaving bool   // the node is leaving gracefully
}

// encodeMeta returns the metadata of a member whose transport listens on
// addr. addr must have passed checkTransportAddr.
func encodeMeta(addr string) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen16+len(addr))
	buf = append(buf, metaVersion)
	buf = binary.AppendUvarint(buf, uint64(len(addr)))
	return append(buf, addr...)
}

// encodeLeavingMeta returns the metadata of a node that is leaving
// gracefully and whose transport listens on addr. addr must have passed
// checkTransportAddr.
func encodeLeavingMeta(addr string) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen16+len(addr)+1)
	buf = append(buf, metaVersionFlags)
	buf = binary.AppendUvarint(buf, uint64(len(addr)))
	buf = append(buf, addr...)
	return append(buf, metaFlagLeaving)
}

// decodeMeta returns the content of a node's metadata.
func decodeMeta(meta []byte) (nodeMeta, error) {
	if len(meta) == 0 {
		return nodeMeta{}, fmt.Errorf("%w: missing", errMalformedMeta)
	}
	version := meta[0]
	if version < metaVersion {
		return nodeMeta{}, fmt.Errorf("%w: version %d", errMalformedMeta, version)
	}
	n, size := binary.Uvarint(meta[1:])
	if size <= 0 || n > uint64(len(meta)-1-size) {
		return nodeMeta{}, fmt.Errorf("%w: truncated", errMalformedMeta)
	}
	end := 1 + size + int(n)
	m := nodeMeta{addr: string(meta[1+size : end])}
	if err := checkTransportAddr(m.addr); err != nil {
		return nodeMeta{}, fmt.Errorf("%w: %w", errMalformedMeta, err)
	}
	if version >= metaVersionFlags {
		if end >= len(meta) {
			return nodeMeta{}, fmt.Errorf("%w: version %d without flags", errMalformedMeta, version)
		}
		m.leaving = meta[end]&metaFlagLeaving != 0
	}
	return m, nil
}

// checkTransportAddr accepts "host:port" with a non-empty host (a name or an
// IP other than 0.0.0.0 or ::) and a port in 1-65535.
func checkTransportAddr(addr string) error {
	if len(addr) > MaxTransportAddrLen {
		return fmt.Errorf("%w: transport address longer than %d bytes", ErrInvalidAddr, MaxTransportAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidAddr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: transport address %q has no host", ErrInvalidAddr, addr)
	}
	// A listen address such as "0.0.0.0:7000" is no address to dial: a
	// member that dialled it would reach its own transport, not this node.
	// netip rather than net.ParseIP, which refuses a zone ("::%lo") while
	// a dialler resolves one to its own unspecified address all the same.
	if ip, err := netip.ParseAddr(host); err == nil && ip.WithZone("").Unmap().IsUnspecified() {
		return fmt.Errorf("%w: transport address %q is unspecified (all interfaces); give one that members can dial",
			ErrInvalidAddr, addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%w: transport address %q: port must be 1-65535", ErrInvalidAddr, addr)
	}
	return nil
}
