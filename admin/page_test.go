package admin

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/breaker"
)

// Quantiles over an interval come from the buckets' differences, interpolated within the
// bucket, as histogram_quantile does.
func TestQuantile(t *testing.T) {
	bounds := []float64{0.001, 0.01, 0.1, 1}
	prev := counters{bounds: bounds, buckets: []float64{100, 100, 100, 100}, count: 100}
	// 100 more replies: 90 under 1 ms, 9 between 1 and 10 ms, 1 between 10 and 100 ms.
	cur := counters{bounds: bounds, buckets: []float64{190, 199, 200, 200}, count: 200}
	if got := quantile(0.5, cur, prev); math.Abs(got-0.001*50/90) > 1e-9 {
		t.Errorf("p50 %v", got)
	}
	if got := quantile(0.99, cur, prev); math.Abs(got-0.01) > 1e-9 {
		t.Errorf("p99 %v, want the 1–10 ms bucket's top", got)
	}
	if got := quantile(0.99, prev, prev); !math.IsNaN(got) {
		t.Errorf("no replies: %v, want NaN", got)
	}
}

// A gap (NaN) breaks a line; the breaker's runs are one band each, its transitions marked
// and the latest labelled.
func TestCharts(t *testing.T) {
	now := time.Unix(10_000, 0)
	at := []time.Time{now.Add(-4 * time.Second), now.Add(-3 * time.Second), now.Add(-2 * time.Second), now.Add(-time.Second)}
	svg := string(lineChart("requests/s", at, now.Add(-time.Minute), now,
		[]series{{name: "", color: colorRequests, y: []float64{1, 2, math.NaN(), 4}}}, nil))
	if n := strings.Count(svg, "<polyline"); n != 1 || !strings.Contains(svg, "<circle") {
		t.Errorf("a line of two points and a lone point, got %d polylines:\n%s", n, svg)
	}
	for _, want := range []string{">now<", ">−30s<", ">−1m<", ">4.0<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	states := []breaker.State{breaker.Closed, breaker.Open, breaker.Open, breaker.HalfOpen}
	hist := []breaker.Transition{{At: at[1], To: breaker.Open, ToName: "open"}, {At: at[3], To: breaker.HalfOpen, ToName: "half-open"}}
	tl := string(timeline(at, states, now.Add(-time.Minute), now, hist))
	if n := strings.Count(tl, `<rect x="`) - 3; n != 3 { // less the legend's three squares
		t.Errorf("%d bands for closed, open, half-open:\n%s", n, tl)
	}
	for _, want := range []string{"open " + at[1].Format("15:04:05"), "half-open " + at[3].Format("15:04:05"), colorOpen} {
		if !strings.Contains(tl, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
}

// The banner says what is wrong and since when.
func TestAlerts(t *testing.T) {
	now := time.Unix(10_000, 0)
	opened := now.Add(-90 * time.Second)
	e := EnsembleStatus{Name: "e", Quorum: false,
		Breaker: BreakerStatus{State: "open", History: []breaker.Transition{{At: opened, ToName: "open", Reason: "health: no quorum"}}},
		Members: []MemberStatus{{Address: "m1", Status: "down", Since: opened, LastError: "connection refused", Ejected: true},
			{Address: "m2", Status: "serving", Serving: true}}}
	points := []point{{At: now.Add(-2 * time.Minute), Quorum: true}, {At: now.Add(-time.Minute)}, {At: now, Rejects: 12}}
	got := alerts(e, points, now)
	if len(got) != 4 {
		t.Fatalf("%d alerts: %+v", len(got), got)
	}
	for i, want := range []struct {
		text  string
		since time.Time
	}{
		{"e: breaker open — health: no quorum", opened},
		{"e: no quorum with a leader", now.Add(-time.Minute)},
		{"e: member m1 down — connection refused (ejected)", opened},
		{"e: 12 requests/s answered by zkgate", now},
	} {
		if !strings.HasPrefix(got[i].Text, want.text) || !got[i].Since.Equal(want.since) {
			t.Errorf("alert %d: %q since %v, want %q since %v", i, got[i].Text, got[i].Since, want.text, want.since)
		}
	}
	if a := alerts(EnsembleStatus{Name: "ok", Quorum: true, Breaker: BreakerStatus{State: "closed"}}, nil, now); len(a) != 0 {
		t.Errorf("a healthy ensemble: %+v", a)
	}
}
