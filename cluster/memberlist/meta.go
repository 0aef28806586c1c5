package memberlist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"

	ml "github.com/hashicorp/memberlist"
)

// Node metadata, gossiped by memberlist with every alive message, carries the
// node's transport address. Its layout is part of the gossip format that
// nodes of different versions must understand:
//
//	+---------+--------------------+----------------------+-----------------+
//	| version | address length     | transport address    | reserved        |
//	| 1 byte  | uvarint (1-2 bytes)| "host:port", UTF-8   | (later versions)|
//	+---------+--------------------+----------------------+-----------------+
//
// Version 1 is the only one written. Readers accept any version >= 1 and
// ignore trailing bytes, so later versions may only append fields. Version 0
// or a truncated record is malformed; such nodes are ignored.
const (
	metaVersion = 1

	// MaxTransportAddrLen is the longest transport address, in bytes, that
	// fits in memberlist's node metadata (ml.MetaMaxSize, 512 bytes).
	MaxTransportAddrLen = ml.MetaMaxSize - 1 - 2
)

var (
	errMalformedMeta = errors.New("memberlist: malformed node metadata")
	errEmptyName     = errors.New("memberlist: empty node name")
)

// encodeMeta returns the metadata for a node whose transport listens on addr.
// addr must have passed checkTransportAddr.
func encodeMeta(addr string) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen16+len(addr))
	buf = append(buf, metaVersion)
	buf = binary.AppendUvarint(buf, uint64(len(addr)))
	return append(buf, addr...)
}

// decodeMeta returns the transport address carried in a node's metadata.
func decodeMeta(meta []byte) (string, error) {
	if len(meta) == 0 {
		return "", fmt.Errorf("%w: missing", errMalformedMeta)
	}
	if meta[0] < metaVersion {
		return "", fmt.Errorf("%w: version %d", errMalformedMeta, meta[0])
	}
	n, size := binary.Uvarint(meta[1:])
	if size <= 0 || n > uint64(len(meta)-1-size) {
		return "", fmt.Errorf("%w: truncated", errMalformedMeta)
	}
	addr := string(meta[1+size : 1+size+int(n)])
	if err := checkTransportAddr(addr); err != nil {
		return "", fmt.Errorf("%w: %w", errMalformedMeta, err)
	}
	return addr, nil
}

// checkTransportAddr accepts "host:port" with a non-empty host (a name or an
// IP) and a port in 1-65535.
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
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%w: transport address %q: port must be 1-65535", ErrInvalidAddr, addr)
	}
	return nil
}
