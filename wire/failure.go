package wire

import (
	"encoding/binary"
	"fmt"
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
)

func (c FailureCode) String() string {
	switch c {
	case FailureUnknownVerb:
		return "unknown verb"
	case FailureHandlerError:
		return "handler error"
	case FailureExpired:
		return "expired"
	case FailureOverloaded:
		return "overloaded"
	case FailureTooLarge:
		return "too large"
	}
	return fmt.Sprintf("failure(%d)", uint8(c))
}

// MaxFailureMessage is the longest failure message carried, in bytes; longer
// ones are cut.
const MaxFailureMessage = 1024

// Failure is the payload of a failure response.
type Failure struct {
	Code    FailureCode
	Message string
}

// AppendFailure appends code u8 | message_len uvarint | message.
func AppendFailure(dst []byte, f Failure) []byte {
	msg := f.Message
	if len(msg) > MaxFailureMessage {
		msg = msg[:MaxFailureMessage]
	}
	dst = append(dst, byte(f.Code))
	dst = binary.AppendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

// DecodeFailure decodes a failure payload.
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
