package transport_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/transport"
)

// promQuantile estimates the q-quantile of a histogram from its bucket
// counts as Prometheus' histogram_quantile does: it finds the bucket that
// holds rank q×count and interpolates linearly between the bucket's lower
// and upper bounds (the first bucket starts at 0; a rank in the +Inf
// bucket yields the highest finite bound). counts has one more entry than
// bounds, the +Inf bucket, as OTel reports them.
func promQuantile(q float64, bounds []float64, counts []uint64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	rank := q * float64(total)
	var below float64
	for i, c := range counts {
		if below+float64(c) < rank || c == 0 {
			below += float64(c)
			continue
		}
		if i == len(bounds) {
			return bounds[len(bounds)-1]
		}
		if i == 0 && bounds[0] <= 0 {
			return bounds[0]
		}
		lower := 0.0
		if i > 0 {
			lower = bounds[i-1]
		}
		return lower + (bounds[i]-lower)*(rank-below)/float64(c)
	}
	return math.NaN()
}

// exactQuantile is the q-quantile of sorted values: the smallest value
// with at least q of them at or below it.
func exactQuantile(q float64, sorted []float64) float64 {
	return sorted[int(math.Ceil(q*float64(len(sorted))))-1]
}

// histogramPoints returns a float64 or int64 histogram's data points as
// float64 ones, keyed by the value of attribute key.
func histogramPoints(t *testing.T, data metricdata.Aggregation, key string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	switch d := data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			v, _ := p.Attributes.Value(attributeKey(key))
			out[v.String()] = p
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			v, _ := p.Attributes.Value(attributeKey(key))
			out[v.String()] = metricdata.HistogramDataPoint[float64]{
				Attributes: p.Attributes, Count: p.Count, Bounds: p.Bounds, BucketCounts: p.BucketCounts,
			}
		}
	default:
		t.Fatalf("%T is not a histogram", data)
	}
	return out
}

// histogramCase is one histogram and the distributions recorded in it:
// log-normal with the given spread, one per median.
type histogramCase struct {
	name         string
	first, last  float64 // the bounds it must span
	medians      []float64
	sigma        float64
	integer      bool // values are rounded to whole numbers, at least 1
	record       func(tr *transport.Transport, series string, v float64)
	attributeKey string
}

// geometric returns values from lo to hi, each factor times the last.
func geometric(lo, hi, factor float64) []float64 {
	var out []float64
	for v := lo; v <= hi; v *= factor {
		out = append(out, v)
	}
	return out
}

func seconds(v float64) time.Duration { return time.Duration(math.Round(v * float64(time.Second))) }

// TestHistogramQuantiles records known distributions in each histogram
// and checks that p50 and p99 derived from the exported buckets, as
// Prometheus derives them, are within 20% of the exact values, across the
// whole span of each histogram's bounds.
func TestHistogramQuantiles(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
	})
	node := c.Nodes[0]
	cases := []histogramCase{{
		name: "internode.request.duration", first: 50e-6, last: 10,
		// p50 from 60 µs, p99 (3.2 × p50) up to 10 s.
		medians: geometric(60e-6, 3, 1.6), sigma: 0.5, attributeKey: "verb",
		record: func(tr *transport.Transport, series string, v float64) {
			transport.RecordRequestDuration(tr, series, seconds(v))
		},
	}, {
		name: "internode.stage.wait", first: 5e-6, last: 10,
		medians: geometric(6e-6, 3, 1.6), sigma: 0.5, attributeKey: "verb",
		record: func(tr *transport.Transport, series string, v float64) {
			transport.RecordStageWait(tr, series, seconds(v))
		},
	}, {
		name: "internode.coalesce.wait", first: 0, last: 1,
		medians: geometric(3e-6, 0.3, 1.6), sigma: 0.5, attributeKey: "peer",
		record: func(tr *transport.Transport, series string, v float64) {
			transport.RecordFlush(tr, series, 1, seconds(v))
		},
	}, {
		name: "internode.coalesce.batch_messages", first: 1, last: 4096,
		medians: geometric(8, 1200, 1.6), sigma: 0.5, integer: true, attributeKey: "peer",
		record: func(tr *transport.Transport, series string, v float64) {
			transport.RecordFlush(tr, series, int(v), 0)
		},
	}}
	const samples = 5000
	rng := rand.New(rand.NewPCG(19, 2026))
	exact := map[string]map[string][]float64{} // histogram → series → sorted values
	for _, hc := range cases {
		exact[hc.name] = map[string][]float64{}
		for i, median := range hc.medians {
			series := fmt.Sprintf("%s/median-%02d", hc.name, i)
			values := make([]float64, samples)
			for j := range values {
				v := median * math.Exp(hc.sigma*rng.NormFloat64())
				if hc.integer {
					v = max(1, math.Round(v))
				} else {
					v = seconds(v).Seconds() // what the histogram receives
				}
				values[j] = v
				hc.record(node, series, v)
			}
			slices.Sort(values)
			exact[hc.name][series] = values
		}
	}
	got := collect(t, reader)
	for _, hc := range cases {
		t.Run(hc.name, func(t *testing.T) {
			require.Contains(t, got, hc.name)
			points := histogramPoints(t, got[hc.name], hc.attributeKey)
			worst := 0.0
			defer func() { t.Logf("largest error of p50 and p99 from the buckets: %.1f%%", 100*worst) }()
			for i := range hc.medians {
				series := fmt.Sprintf("%s/median-%02d", hc.name, i)
				p, ok := points[series]
				require.True(t, ok, series)
				require.Equal(t, uint64(samples), p.Count)
				if i == 0 {
					assert.Equal(t, hc.first, p.Bounds[0], "first bound")
					assert.Equal(t, hc.last, p.Bounds[len(p.Bounds)-1], "last bound")
					for j := 1; j < len(p.Bounds); j++ {
						if p.Bounds[j-1] > 0 && !(hc.integer && p.Bounds[j]-p.Bounds[j-1] == 1) {
							assert.LessOrEqual(t, p.Bounds[j]/p.Bounds[j-1], 1.5+1e-9, "bounds %v and %v", p.Bounds[j-1], p.Bounds[j])
						}
					}
					t.Logf("%d bounds: %v", len(p.Bounds), p.Bounds)
				}
				for _, q := range []float64{0.5, 0.99} {
					want := exactQuantile(q, exact[hc.name][series])
					estimate := promQuantile(q, p.Bounds, p.BucketCounts)
					worst = max(worst, math.Abs(estimate-want)/want)
					assert.InEpsilon(t, want, estimate, 0.2, "%s p%v: exact %.4g, from the buckets %.4g", series, q*100, want, estimate)
				}
			}
		})
	}
}

// TestHistogramBucketEdges checks that values land in the bucket whose
// upper bound they are (Prometheus' le, "less than or equal"), that
// writes which did not wait land in the coalescing wait's le="0" bucket,
// and that small batches are counted exactly, one bucket per size.
func TestHistogramBucketEdges(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
	})
	node := c.Nodes[0]
	transport.RecordRequestDuration(node, "edges", 50*time.Microsecond)
	transport.RecordRequestDuration(node, "edges", 10*time.Second)
	transport.RecordRequestDuration(node, "edges", 11*time.Second)
	for size := 1; size <= 4; size++ {
		for range size {
			transport.RecordFlush(node, "edges", size, 0)
		}
	}
	got := collect(t, reader)
	requests := histogramPoints(t, got["internode.request.duration"], "verb")["edges"]
	require.Equal(t, uint64(3), requests.Count)
	n := len(requests.BucketCounts)
	assert.Equal(t, uint64(1), requests.BucketCounts[0], "50 µs is in le=5e-05")
	assert.Equal(t, uint64(1), requests.BucketCounts[n-2], "10 s is in le=10")
	assert.Equal(t, uint64(1), requests.BucketCounts[n-1], "11 s is in le=+Inf")

	batches := histogramPoints(t, got["internode.coalesce.batch_messages"], "peer")["edges"]
	assert.Equal(t, []float64{1, 2, 3, 4}, batches.Bounds[:4])
	assert.Equal(t, []uint64{1, 2, 3, 4}, batches.BucketCounts[:4], "one bucket per size up to 4")
	waits := histogramPoints(t, got["internode.coalesce.wait"], "peer")["edges"]
	assert.Equal(t, 0.0, waits.Bounds[0])
	assert.Equal(t, uint64(10), waits.BucketCounts[0], "writes that did not wait are in le=0")
}
