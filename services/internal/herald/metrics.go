package herald

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"herald/services/contract"
)

// emfMaxValues is the most values one metric may carry in one EMF document.
const emfMaxValues = 100

// maxSamplesPerFlush bounds the latency samples kept per metric between two
// flushes; past it, reservoir sampling keeps a uniform sample (counts stay exact).
const maxSamplesPerFlush = 1000

// Metrics aggregates counters and latency samples in memory and writes them
// as CloudWatch Embedded Metric Format lines, one JSON document per line, so
// CloudWatch Logs extracts metrics with no agent. A nil *Metrics discards
// everything, which is how metrics are turned off.
type Metrics struct {
	environment string
	service     contract.Service
	now         func() time.Time

	writeMu sync.Mutex
	w       io.Writer

	mu       sync.Mutex
	counters map[metricKey]float64
	samples  map[metricKey]*reservoir
	totals   map[string]float64
}

type metricKey struct {
	name, dim, value string // dim is "" for the rollup without a breakdown
	unit             contract.Unit
}

type reservoir struct {
	seen   int
	values []float64
}

// NewMetrics writes to w, tagging every metric with the environment's name
// and the service. It takes only the service's own metrics (contract.Metric).
func NewMetrics(w io.Writer, environment string, service contract.Service) *Metrics {
	return &Metrics{
		environment: environment, service: service, w: w, now: time.Now,
		counters: map[metricKey]float64{},
		samples:  map[metricKey]*reservoir{},
		totals:   map[string]float64{},
	}
}

// Count adds n to a counter.
func (m *Metrics) Count(metric contract.Metric, n float64) {
	if m == nil {
		return
	}
	m.check(metric, contract.Count, false)
	m.mu.Lock()
	m.counters[metricKey{name: metric.Name, unit: metric.Unit}] += n
	m.totals[metric.Name] += n
	m.mu.Unlock()
}

// CountBy adds n to a counter and to its breakdown by the metric's By
// dimension (Rejected by Reason, Failed by Class).
func (m *Metrics) CountBy(metric contract.Metric, value string, n float64) {
	if m == nil {
		return
	}
	m.check(metric, contract.Count, true)
	m.mu.Lock()
	m.counters[metricKey{name: metric.Name, unit: metric.Unit}] += n
	m.counters[metricKey{name: metric.Name, dim: metric.By, value: value, unit: metric.Unit}] += n
	m.totals[metric.Name] += n
	m.totals[metric.Name+"."+value] += n
	m.mu.Unlock()
}

// Observe records one duration sample in milliseconds.
func (m *Metrics) Observe(metric contract.Metric, d time.Duration) {
	if m == nil {
		return
	}
	m.check(metric, contract.Milliseconds, false)
	ms := float64(d.Microseconds()) / 1000
	m.mu.Lock()
	k := metricKey{name: metric.Name, unit: metric.Unit}
	r := m.samples[k]
	if r == nil {
		r = &reservoir{}
		m.samples[k] = r
	}
	r.seen++
	if len(r.values) < maxSamplesPerFlush {
		r.values = append(r.values, ms)
	} else if i := rand.IntN(r.seen); i < maxSamplesPerFlush {
		r.values[i] = ms
	}
	m.mu.Unlock()
}

// check panics on a metric the contract gives another service, unit or
// breakdown: a programming error the service's tests meet at once.
func (m *Metrics) check(metric contract.Metric, unit contract.Unit, breakdown bool) {
	if metric.Service != m.service || metric.Unit != unit || (metric.By != "") != breakdown {
		panic(fmt.Sprintf("herald: metric %+v recorded by %s as %s (breakdown %v)", metric, m.service, unit, breakdown))
	}
}

// Totals returns the counters summed since start ("Rejected", and
// "Rejected.<reason>" for breakdowns). For tests and diagnostics.
func (m *Metrics) Totals() map[string]float64 {
	out := map[string]float64{}
	if m == nil {
		return out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.totals {
		out[k] = v
	}
	return out
}

// Run flushes every interval until ctx ends, then flushes once more.
func (m *Metrics) Run(ctx context.Context, interval time.Duration) {
	if m == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.Flush()
			return
		case <-t.C:
			m.Flush()
		}
	}
}

// Flush writes what was gathered since the last flush and resets it.
func (m *Metrics) Flush() {
	if m == nil {
		return
	}
	m.mu.Lock()
	counters, samples := m.counters, m.samples
	m.counters = map[metricKey]float64{}
	m.samples = map[metricKey]*reservoir{}
	m.mu.Unlock()

	// Group by dimension set: one EMF document per set (and per chunk of 100
	// samples, the EMF limit on values per metric).
	type group struct {
		dim, value string
		counts     map[string]float64
		units      map[string]string
		series     map[string][]float64
	}
	groups := map[[2]string]*group{}
	get := func(k metricKey) *group {
		g := groups[[2]string{k.dim, k.value}]
		if g == nil {
			g = &group{dim: k.dim, value: k.value, counts: map[string]float64{}, units: map[string]string{}, series: map[string][]float64{}}
			groups[[2]string{k.dim, k.value}] = g
		}
		return g
	}
	for k, v := range counters {
		g := get(k)
		g.counts[k.name] = v
		g.units[k.name] = string(k.unit)
	}
	for k, r := range samples {
		g := get(k)
		g.series[k.name] = r.values
		g.units[k.name] = string(k.unit)
	}
	keys := make([][2]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })

	ts := m.now().UnixMilli()
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	for _, k := range keys {
		g := groups[k]
		for chunk := 0; ; chunk++ {
			doc := map[string]any{contract.DimEnvironment: m.environment, contract.DimService: string(m.service)}
			dims := []string{contract.DimEnvironment, contract.DimService}
			if g.dim != "" {
				doc[g.dim] = g.value
				dims = append(dims, g.dim)
			}
			var defs []map[string]string
			if chunk == 0 {
				for name, v := range g.counts {
					doc[name] = v
					defs = append(defs, map[string]string{"Name": name, "Unit": g.units[name]})
				}
			}
			for name, vals := range g.series {
				lo := chunk * emfMaxValues
				if lo >= len(vals) {
					continue
				}
				doc[name] = vals[lo:min(lo+emfMaxValues, len(vals))]
				defs = append(defs, map[string]string{"Name": name, "Unit": g.units[name]})
			}
			if len(defs) == 0 {
				break
			}
			sort.Slice(defs, func(i, j int) bool { return defs[i]["Name"] < defs[j]["Name"] })
			doc["_aws"] = map[string]any{
				"Timestamp": ts,
				"CloudWatchMetrics": []any{map[string]any{
					"Namespace":  contract.Namespace,
					"Dimensions": [][]string{dims},
					"Metrics":    defs,
				}},
			}
			line, err := json.Marshal(doc)
			if err != nil {
				continue // only plain maps, strings and numbers: cannot fail
			}
			m.w.Write(append(line, '\n'))
		}
	}
}
