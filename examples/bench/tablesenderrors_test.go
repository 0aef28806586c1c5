package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A scenario whose sends fail with errors other than ErrBusy has sent
// none of them, so nothing is lost and nothing rejected: the table must
// show those refusals (send_errors), or the run looks healthy.
func TestTableShowsSendErrors(t *testing.T) {
	results := []Result{
		{Scenario: "large-mixed", System: "internode", SendErrors: 7777, Drained: true},
		{Scenario: "large-mixed", System: "raw-tcp-batched", Drained: true},
	}
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, []*Scenario{scenarioLargeMixed}, results))
	lines := strings.Split(out.String(), "\n")
	require.Greater(t, len(lines), 3, out.String())
	assert.Regexp(t, `lost +rejected +send errors +load`, lines[1], "the header")
	assert.Regexp(t, `large-mixed +internode .* 0 +0 +7777 +-$`, lines[2], "the failing system's row")
	assert.Regexp(t, `large-mixed +raw-tcp-batched .* 0 +0 +0 +-$`, lines[3])
}
