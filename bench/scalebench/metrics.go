package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// histogram is a Prometheus histogram: cumulative counts per upper bound,
// the last bound +Inf.
type histogram struct {
	Bounds []float64
	Cum    []float64
}

// Count is the number of observations.
func (h histogram) Count() float64 {
	if len(h.Cum) == 0 {
		return 0
	}
	return h.Cum[len(h.Cum)-1]
}

// add returns h+o; a histogram with other bounds is an error (the same
// metric from another binary version).
func (h histogram) add(o histogram, sign float64) (histogram, error) {
	if len(h.Bounds) == 0 {
		h = histogram{Bounds: o.Bounds, Cum: make([]float64, len(o.Cum))}
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return h, fmt.Errorf("histogram buckets differ: %v vs %v", h.Bounds, o.Bounds)
	}
	out := histogram{Bounds: h.Bounds, Cum: slices.Clone(h.Cum)}
	for i := range out.Cum {
		out.Cum[i] += sign * o.Cum[i]
	}
	return out, nil
}

// Quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linear within the bucket holding the rank, the highest finite bound
// when the rank falls in +Inf. It is 0 without observations (the reports
// print the count beside it).
func (h histogram) Quantile(q float64) float64 {
	n := h.Count()
	if n <= 0 {
		return 0
	}
	rank := q * n
	for i, c := range h.Cum {
		if c < rank {
			continue
		}
		if math.IsInf(h.Bounds[i], 1) {
			if i == 0 {
				return 0
			}
			return h.Bounds[i-1]
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = h.Bounds[i-1], h.Cum[i-1]
		}
		if c == below {
			return h.Bounds[i]
		}
		return lower + (h.Bounds[i]-lower)*(rank-below)/(c-below)
	}
	return h.Bounds[len(h.Bounds)-1]
}

// scrape is one /metrics document, parsed.
type scrape map[string]*dto.MetricFamily

func parseScrape(r io.Reader) (scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return fams, nil
}

// histograms sums metric's histograms by the values of labels (joined with
// " "), adding up series that differ in other labels.
func (s scrape) histograms(metric string, labels ...string) (map[string]histogram, error) {
	out := map[string]histogram{}
	fam := s[metric]
	if fam == nil {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		hp := m.GetHistogram()
		if hp == nil {
			return nil, fmt.Errorf("%s is a %s, not a histogram", metric, fam.GetType())
		}
		key := labelKey(m, labels)
		h := histogram{}
		for _, b := range hp.GetBucket() {
			h.Bounds = append(h.Bounds, b.GetUpperBound())
			h.Cum = append(h.Cum, float64(b.GetCumulativeCount()))
		}
		// The text format lists +Inf as a bucket; other sources may not.
		if n := len(h.Bounds); n == 0 || !math.IsInf(h.Bounds[n-1], 1) {
			h.Bounds = append(h.Bounds, math.Inf(1))
			h.Cum = append(h.Cum, float64(hp.GetSampleCount()))
		}
		sum, err := out[key].add(h, 1)
		if err != nil {
			return nil, fmt.Errorf("%s{%s}: %w", metric, key, err)
		}
		out[key] = sum
	}
	return out, nil
}

// counter sums every series of metric (counter or gauge); 0 when absent.
func (s scrape) counter(metric string) float64 {
	var v float64
	for _, m := range s[metric].GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

func labelKey(m *dto.Metric, labels []string) string {
	vals := make([]string, len(labels))
	for i, name := range labels {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				vals[i] = l.GetValue()
			}
		}
	}
	return strings.Join(vals, " ")
}

// histDelta is after-before per key, summed over servers: the
// observations made between two scrapes of every server.
func histDelta(before, after []map[string]histogram) (map[string]histogram, error) {
	out := map[string]histogram{}
	for sign, side := range map[float64][]map[string]histogram{1: after, -1: before} {
		for _, hs := range side {
			for k, h := range hs {
				sum, err := out[k].add(h, sign)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				out[k] = sum
			}
		}
	}
	return out, nil
}
