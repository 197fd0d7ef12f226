package admin

import (
	"context"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/zkgate/zkgate/breaker"
)

// The status page's charts cover HistorySpan, one point per SampleEvery by default: a
// fixed-size ring per ensemble, 180 points.
const (
	HistorySpan = 15 * time.Minute
	SampleEvery = 5 * time.Second
)

// point is one ensemble at one sample: rates over the interval since the one before.
type point struct {
	At                        time.Time
	Requests, Errors, Rejects float64 // per second
	P50, P99                  float64 // reply latency over the interval, ms; NaN without replies
	Breaker                   breaker.State
	Sessions                  map[string]int // per member
	Quorum                    bool
	haveRates                 bool // false for an ensemble's first sample
}

// counters are the cumulative figures a point is the difference of.
type counters struct {
	at                        time.Time
	requests, errors, rejects float64
	bounds                    []float64 // histogram upper bounds, seconds
	buckets                   []float64 // cumulative counts per bound
	count                     float64
}

// ring holds an ensemble's last points, oldest overwritten first.
type ring struct {
	points []point
	next   int
	full   bool
	prev   counters
	seen   bool
}

func (r *ring) add(p point) {
	if r.full {
		r.points[r.next] = p
	} else {
		r.points = append(r.points, p)
	}
	r.next++
	if r.next == cap(r.points) {
		r.next, r.full = 0, true
	}
}

// ordered returns the points oldest first.
func (r *ring) ordered() []point {
	if !r.full {
		return append([]point(nil), r.points...)
	}
	return append(append([]point(nil), r.points[r.next:]...), r.points[:r.next]...)
}

// Sample records a point per ensemble now and then every `every` until ctx ends; the
// status page charts the last HistorySpan of them.
func (a *Server) Sample(ctx context.Context, every time.Duration) {
	a.mu.Lock()
	a.every = every
	a.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.sampleOnce(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Server) sampleOnce(now time.Time) {
	cs := a.gatherCounters(now)
	a.mu.Lock()
	defer a.mu.Unlock()
	size := max(int(HistorySpan/a.every), 2)
	for _, e := range a.ensembles.List() {
		r := a.hist[e.Name]
		if r == nil {
			r = &ring{points: make([]point, 0, size)}
			a.hist[e.Name] = r
		}
		c := cs[e.Name]
		v := e.Monitor.View()
		p := point{At: now, Breaker: e.Server.Breaker().State(), Sessions: map[string]int{}, Quorum: v.Quorum,
			P50: math.NaN(), P99: math.NaN()}
		perMember := e.Server.SessionsPerMember()
		for _, m := range v.Members {
			p.Sessions[m.Address] = perMember[m.Address] // every member has a line, sessions or not
		}
		if r.seen {
			if d := now.Sub(r.prev.at).Seconds(); d > 0 {
				p.haveRates = true
				p.Requests = max(c.requests-r.prev.requests, 0) / d
				p.Errors = max(c.errors-r.prev.errors, 0) / d
				p.Rejects = max(c.rejects-r.prev.rejects, 0) / d
				p.P50 = quantile(0.50, c, r.prev) * 1000
				p.P99 = quantile(0.99, c, r.prev) * 1000
			}
		}
		r.prev, r.seen = c, true
		r.add(p)
	}
}

// gatherCounters reads each ensemble's cumulative figures from the metrics registry.
func (a *Server) gatherCounters(now time.Time) map[string]counters {
	out := map[string]counters{}
	families, err := a.gatherer.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			ens := label(m, "ensemble")
			c := out[ens]
			c.at = now
			switch f.GetName() {
			case "zkgate_requests_total":
				c.requests += m.GetCounter().GetValue()
			case "zkgate_error_responses_total":
				c.errors += m.GetCounter().GetValue()
			case "zkgate_rejected_requests_total", "zkgate_limited_requests_total":
				c.rejects += m.GetCounter().GetValue()
			case "zkgate_request_duration_seconds":
				h := m.GetHistogram()
				if c.bounds == nil {
					for _, b := range h.GetBucket() {
						c.bounds = append(c.bounds, b.GetUpperBound())
					}
					c.buckets = make([]float64, len(c.bounds))
				}
				for i, b := range h.GetBucket() {
					if i < len(c.buckets) {
						c.buckets[i] += float64(b.GetCumulativeCount())
					}
				}
				c.count += float64(h.GetSampleCount())
			}
			out[ens] = c
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantile estimates the q-quantile of the latencies observed between prev and cur from
// the histogram buckets' differences, interpolating within the bucket, as Prometheus's
// histogram_quantile does. NaN without observations.
func quantile(q float64, cur, prev counters) float64 {
	total := cur.count - prev.count
	if total <= 0 || len(cur.bounds) == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, ub := range cur.bounds {
		n := cur.buckets[i]
		if i < len(prev.buckets) {
			n -= prev.buckets[i]
		}
		if n >= rank {
			if n == below {
				return ub
			}
			return lower + (ub-lower)*(rank-below)/(n-below)
		}
		lower, below = ub, n
	}
	return cur.bounds[len(cur.bounds)-1] // past the last finite bound
}
