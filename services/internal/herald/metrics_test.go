package herald

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"herald/services/contract"
)

type emfDoc struct {
	AWS struct {
		Timestamp         int64
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name, Unit string }
		}
	} `json:"_aws"`
}

func decodeEMF(t *testing.T, out string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d emfDoc
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		// Every document must declare its namespace, dimensions and metrics,
		// and carry a value for each declared metric and dimension.
		if len(d.AWS.CloudWatchMetrics) != 1 || d.AWS.CloudWatchMetrics[0].Namespace != contract.Namespace {
			t.Fatalf("bad EMF envelope: %s", line)
		}
		for _, dims := range d.AWS.CloudWatchMetrics[0].Dimensions {
			for _, dim := range dims {
				if _, ok := m[dim].(string); !ok {
					t.Fatalf("dimension %s has no value: %s", dim, line)
				}
			}
		}
		for _, met := range d.AWS.CloudWatchMetrics[0].Metrics {
			if _, ok := m[met.Name]; !ok {
				t.Fatalf("metric %s has no value: %s", met.Name, line)
			}
		}
		docs = append(docs, m)
	}
	return docs
}

func TestMetricsFlushEMF(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "dev", contract.API)
	m.Count(contract.Accepted, 2)
	m.Count(contract.Accepted, 1)
	m.CountBy(contract.Rejected, "validation", 1)
	m.CountBy(contract.Rejected, "auth", 2)
	for i := range 250 {
		m.Observe(contract.EnqueueLatency, time.Duration(i)*time.Millisecond)
	}
	m.Flush()
	docs := decodeEMF(t, buf.String())

	var accepted, rejected float64
	latencies := 0
	byReason := map[string]float64{}
	for _, d := range docs {
		if d["Environment"] != "dev" || d["Service"] != "notification-api" {
			t.Fatalf("missing base dimensions: %v", d)
		}
		if r, ok := d["Reason"].(string); ok {
			byReason[r] += d["Rejected"].(float64)
			continue
		}
		if v, ok := d["Accepted"].(float64); ok {
			accepted += v
		}
		if v, ok := d["Rejected"].(float64); ok {
			rejected += v
		}
		if v, ok := d["EnqueueLatency"].([]any); ok {
			if len(v) > emfMaxValues {
				t.Fatalf("%d values in one document; EMF allows %d", len(v), emfMaxValues)
			}
			latencies += len(v)
		}
	}
	if accepted != 3 || rejected != 3 || byReason["validation"] != 1 || byReason["auth"] != 2 {
		t.Fatalf("accepted %v rejected %v by reason %v", accepted, rejected, byReason)
	}
	if latencies != 250 {
		t.Fatalf("%d latency samples written, want 250", latencies)
	}

	// A flush resets the interval; totals keep counting.
	buf.Reset()
	m.Flush()
	if buf.Len() != 0 {
		t.Fatalf("empty interval wrote %q", buf.String())
	}
	if tot := m.Totals(); tot["Accepted"] != 3 || tot["Rejected.auth"] != 2 {
		t.Fatalf("totals %v", tot)
	}
}

func TestMetricsSampleBound(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "dev", contract.Sender)
	for range 5 * maxSamplesPerFlush {
		m.Observe(contract.SendLatency, time.Millisecond)
	}
	m.Flush()
	n := 0
	for _, d := range decodeEMF(t, buf.String()) {
		if v, ok := d["SendLatency"].([]any); ok {
			n += len(v)
		}
	}
	if n != maxSamplesPerFlush {
		t.Fatalf("%d samples written, want the bound %d", n, maxSamplesPerFlush)
	}
}

func TestNilMetricsIsOff(t *testing.T) {
	var m *Metrics
	m.Count(contract.Sent, 1)
	m.CountBy(contract.Failed, "v", 1)
	m.Observe(contract.SendLatency, time.Second)
	m.Flush()
	if len(m.Totals()) != 0 {
		t.Fatal("nil metrics counted")
	}
}

// A metric is the contract's, recorded by its own service as its own unit:
// anything else is a programming error, refused at once.
func TestMetricsRefuseAnotherServicesMetric(t *testing.T) {
	m := NewMetrics(&bytes.Buffer{}, "dev", contract.API)
	for name, record := range map[string]func(){
		"another service's":      func() { m.Count(contract.Sent, 1) },
		"a breakdown as a count": func() { m.Count(contract.Rejected, 1) },
		"a count as a sample":    func() { m.Observe(contract.Accepted, time.Second) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s metric recorded", name)
				}
			}()
			record()
		}()
	}
}

func TestUnitsFromTheContract(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "dev", contract.Sender)
	m.Count(contract.Sent, 1)
	m.Observe(contract.PausedTime, time.Second)
	m.Flush()
	for _, want := range []string{`{"Name":"Sent","Unit":"Count"}`, `{"Name":"PausedTime","Unit":"Milliseconds"}`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %s in %s", want, buf.String())
		}
	}
}
