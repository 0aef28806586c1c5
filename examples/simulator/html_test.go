package main

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tick labels are short: steps are multiplied, not summed, so no
// 0.6000000000000001 pushes a label off the chart.
func TestChartTickLabels(t *testing.T) {
	var samples []sample
	for i, v := range []float64{0.2, 0.9, 0.4, 0.7, 0.1, 0.3, 0.8} {
		samples = append(samples, sample{T: 0.7 * float64(i+1), FailedPerSec: v})
	}
	svg := string(lineChart(chartSpec{"t", unitMsgsPerSec, false, halfW, halfH, 0},
		[]series{seriesOf("failed", "#000", false, samples, func(s sample) float64 { return s.FailedPerSec })}, nil))
	labels := regexp.MustCompile(`class="axis"[^>]*>([^<]*)</text>`).FindAllStringSubmatch(svg, -1)
	require.NotEmpty(t, labels)
	for _, l := range labels {
		require.LessOrEqual(t, len(l[1]), 5, "tick label %q", l[1])
	}
	require.Contains(t, svg, `>0.6</text>`)
	require.Equal(t, "1.5k", tickLabel(1500))
	require.Equal(t, "0.3", tickLabel(3*0.1))
}
