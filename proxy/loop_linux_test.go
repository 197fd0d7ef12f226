//go:build linux

package proxy

import (
	"testing"
	"time"
)

// TestCoalesceWindow: how long a loop lets frames gather, from its requests in flight,
// their average reply latency and the observed arrival rate of frames.
func TestCoalesceWindow(t *testing.T) {
	const ms, us = time.Millisecond, time.Microsecond
	for _, tc := range []struct {
		name     string
		coalesce time.Duration
		share    float64
		flight   int
		latency  time.Duration
		rate     float64 // frames per second
		want     time.Duration
	}{
		{"busy: sized to gather a batch", 0, 0, 256, 8 * ms, 40000, coalesceBatch * 25 * us},
		{"slow arrivals: the latency share bounds it", 0, 0, 256, 8 * ms, 8000, 1 * ms},
		{"capped", 0, 0, 256, 40 * ms, 4000, DefaultCoalesce},
		{"a lone request in flight is never held", 0, 0, 1, 40 * ms, 40000, 0},
		{"two in flight, dense arrivals", 0, 0, 2, 8 * ms, 40000, coalesceBatch * 25 * us},
		{"sparse: fewer than coalesceGain frames expected", 0, 0, 256, 8 * ms, 2000, 0},
		{"one sequential client", 0, 0, 1, 200 * us, 5000, 0},
		{"very dense: too short to pay", 0, 0, 256, 8 * ms, 400000, 0},
		{"fast replies: too short to pay", 0, 0, 256, 500 * us, 40000, 0},
		{"no replies yet", 0, 0, 256, 0, 40000, 0},
		{"no rate yet", 0, 0, 256, 8 * ms, 0, 0},
		{"off", -1, 0, 256, 40 * ms, 40000, 0},
		{"share", 5 * ms, 0.25, 64, 16 * ms, 2000, 4 * ms},
	} {
		cfg := DefaultConfig()
		if tc.coalesce != 0 {
			cfg.Coalesce = tc.coalesce
		}
		if tc.share != 0 {
			cfg.CoalesceShare = tc.share
		}
		srv := &Server{}
		c := cfg.withDefaults()
		srv.cfg.Store(&c)
		l := &loop{srv: srv, o: out{flight: tc.flight, latency: tc.latency}, rate: tc.rate}
		if got := l.window(); got != tc.want {
			t.Errorf("%s: window %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCoalesceRate: the arrival rate counts frames both ways (requests add to the
// loop's flight, replies take from it), over periods of at least ratePeriod, and decays
// when frames stop.
func TestCoalesceRate(t *testing.T) {
	l := &loop{}
	t0 := time.Unix(1000, 0)
	l.observe(t0) // the first reading only starts the count
	if l.rate != 0 {
		t.Fatalf("rate %v after the first reading", l.rate)
	}
	now := t0
	for range 40 { // 100 requests and 100 replies every 10 ms: 20,000 frames/s
		l.o.flight = 0
		l.arrivals(l.o.flight - 100)
		l.arrivals(l.o.flight + 100)
		now = now.Add(10 * time.Millisecond)
		l.observe(now.Add(-7 * time.Millisecond)) // too soon: no reading
		l.observe(now)
	}
	if l.rate < 19000 || l.rate > 20001 {
		t.Fatalf("rate %.0f frames/s, want about 20000", l.rate)
	}
	for range 20 {
		now = now.Add(10 * time.Millisecond)
		l.observe(now)
	}
	if l.rate > 100 {
		t.Fatalf("rate %.0f frames/s after 200 ms without frames, want it near 0", l.rate)
	}
}
