package wire

import "errors"

// Errors returned by the decoders. A decoder error means the peer sent bytes
// that are not valid internode wire format; the connection that carried them
// must be closed.
var (
	ErrBadMagic          = errors.New("wire: bad magic")
	ErrTruncated         = errors.New("wire: truncated input")
	ErrChecksum          = errors.New("wire: checksum mismatch")
	ErrFrameTooLarge     = errors.New("wire: frame too large")
	ErrMessageTooLarge   = errors.New("wire: message too large")
	ErrHandshakeTooLarge = errors.New("wire: handshake too large")
	ErrMalformed         = errors.New("wire: malformed")
)
