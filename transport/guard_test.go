package transport

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

// countLevel counts records at warning level and above.
type countLevel struct{ n *atomic.Int64 }

func (h countLevel) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countLevel) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countLevel) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countLevel) WithGroup(string) slog.Handler      { return h }

// TestRateLogLimitsEachKey: a flood of one kind of warning logs its burst
// per interval and then one line saying how many were left out; another
// kind has a burst of its own.
func TestRateLogLimitsEachKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		r := rateLog{log: slog.New(countLevel{&n}), every: time.Second, burst: 5}
		refused := logKey{refusal: RefusedMalformed + 1}
		for range 10_000 {
			r.warn(refused, "refused")
		}
		assert.Equal(t, int64(5), n.Load(), "the burst, then nothing")
		r.warn(logKey{badInput: BadInputChecksum + 1}, "bad")
		assert.Equal(t, int64(6), n.Load(), "another key has its own burst")
		time.Sleep(time.Second)
		r.warn(refused, "refused")
		assert.Equal(t, int64(8), n.Load(), "next interval: how many were left out, and the warning")
	})
}

func TestBadInputOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want BadInput
	}{
		{context.DeadlineExceeded, BadInputSilent},
		{assert.AnError, BadInputMalformed},
	} {
		assert.Equal(t, tt.want, badInputOf(tt.err), "%v", tt.err)
	}
}
