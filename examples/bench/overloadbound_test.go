package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// overload's peak inbound bytes is the highest over repeats; the bound it
// is held to must not come from other repeats, whose bound was higher
// (more inbound connections seen): a repeat over its own bound is short
// whatever the others did.
func TestOverloadPeakHeldToItsRepeatsBound(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	runs := []Result{
		{Scenario: "overload", System: "internode", PeakInboundBytes: v(21), InboundLimitBytes: v(20), Drained: true},
		{Scenario: "overload", System: "internode", PeakInboundBytes: v(10), InboundLimitBytes: v(28), Drained: true},
		{Scenario: "overload", System: "internode", PeakInboundBytes: v(10), InboundLimitBytes: v(28), Drained: true},
	}
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, []*Scenario{scenarioOverload}, []Result{median(runs)}))
	assert.Regexp(t, `overload +peak inbound MiB / inbound limit MiB +internode / internode +[0-9.]+× +≤ 1× +SHORT`, out.String())
}
