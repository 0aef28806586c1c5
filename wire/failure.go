package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// FailureCode says why a request failed. It is part of the wire format.
type FailureCode uint8

const (
	FailureUnknown      FailureCode = 0 // a reason this version does not know
	FailureUnknownVerb  FailureCode = 1 // no handler for the verb
	FailureHandlerError FailureCode = 2 // the handler returned an error
	FailureExpired      FailureCode = 3 // the request expired before it was handled
	FailureOverloaded   FailureCode = 4 // the receiver had no capacity for it
	FailureTooLarge     FailureCode = 5 // the request or its response exceeded a size limit
	FailureCanceled     FailureCode = 6 // the sender withdrew the message (FrameLargeCancel)
	FailureCorrupt      FailureCode = 7 // a file transfer's bytes did not match their checksum
	FailureIncomplete   FailureCode = 8 // a file transfer ended before all its bytes arrived
)

func (c FailureCode) String() string {
	switch c {
	case FailureUnknown:
		return "unknown"
	case FailureUnknownVerb:
		return "unknown verb"
	case FailureHandlerError:
		return "handler error"
	case FailureExpired:
		return "expired"
	case FailureOverloaded:
		return "overloaded"
	case FailureCanceled:
		return "canceled"
	case FailureTooLarge:
		return "too large"
	case FailureCorrupt:
		return "corrupt"
	case FailureIncomplete:
		return "incomplete"
	}
	return fmt.Sprintf("failure(%d)", uint8(c))
}

// MaxFailureMessage is the longest failure message carried, in bytes; longer
// ones are cut. It is part of the wire format: DecodeFailure rejects longer.
const MaxFailureMessage = 1024

// Failure is the payload of a failure response.
type Failure struct {
	Code    FailureCode
	Message string
}

// AppendFailure appends code u8 | message_len uvarint | message. A message
// longer than MaxFailureMessage bytes is cut at a UTF-8 character boundary.
func AppendFailure(dst []byte, f Failure) []byte {
	msg := cutUTF8(f.Message, MaxFailureMessage)
	dst = append(dst, byte(f.Code))
	dst = binary.AppendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

// DecodeFailure decodes a failure payload, which must fill b exactly. A code
// this version does not define is returned as it is (read it as
// FailureUnknown); the message is not checked to be UTF-8.
func DecodeFailure(b []byte) (Failure, error) {
	if len(b) < 1 {
		return Failure{}, ErrTruncated
	}
	l, n, err := uvarint(b, 1)
	if err != nil {
		return Failure{}, err
	}
	if l > MaxFailureMessage {
		return Failure{}, fmt.Errorf("%w: failure message of %d bytes", ErrMalformed, l)
	}
	if uint64(len(b)-n) != l {
		return Failure{}, fmt.Errorf("%w: failure message length %d, %d bytes left", ErrMalformed, l, len(b)-n)
	}
	return Failure{Code: FailureCode(b[0]), Message: string(b[n:])}, nil
}

// cutUTF8 returns s cut to at most n bytes, without splitting a UTF-8
// encoded character (bytes that are not UTF-8 are cut anywhere).
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	// Back off over at most three continuation bytes to a character start.
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n
	}
	return s[:cut]
}
