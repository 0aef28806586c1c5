package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestReasonOf(t *testing.T) {
	tests := []struct {
		err  error
		want Reason
		ok   bool
	}{
		{&OpError{Op: "send", Err: ErrOverloaded}, ReasonOverloaded, true},
		{&OpError{Op: "request", Err: errRequestExpired}, ReasonExpired, true},
		{context.DeadlineExceeded, ReasonExpired, true},
		{context.Canceled, ReasonCanceled, true},
		{fmt.Errorf("x: %w", ErrConnectionReset), ReasonConnectionReset, true},
		{&OpError{Op: "request", Err: &RemoteError{Code: 2, Message: "boom"}}, ReasonHandlerError, true},
		{ErrClosed, ReasonClosed, true},
		{errors.New("disk full"), ReasonConnectionReset, false},
	}
	for _, tt := range tests {
		got, ok := ReasonOf(tt.err)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ReasonOf(%v) = %v, %v; want %v, %v", tt.err, got, ok, tt.want, tt.ok)
		}
	}
}
