package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The overload and saturate targets want lost = 0 (doc.go): sent −
// delivered − failed below zero is messages counted twice, delivered or
// failed, which can as well hide as many really lost. It is short, not a
// pass.
func TestNegativeLostIsShort(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	results := []Result{
		{Scenario: "overload", System: "internode", PeakInboundBytes: v(1), InboundLimitBytes: v(2), Lost: -2, Drained: true},
		{Scenario: "saturate", System: "internode", Lost: 0, Drained: true},
	}
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, []*Scenario{scenarioOverload, scenarioSaturate}, results))
	assert.Regexp(t, `overload +lost +internode +-2 += 0 +SHORT`, out.String())
	assert.Regexp(t, `saturate +lost +internode +0 += 0 +pass`, out.String())
}
