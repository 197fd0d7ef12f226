//go:build linux

package proxy

import (
	"testing"
	"time"
)

// TestCoalesceWindow: how long a loop lets frames gather, from its requests in flight and
// the sessions they are on, their average reply latency and the observed arrival rate of
// frames.
func TestCoalesceWindow(t *testing.T) {
	const ms, us = time.Millisecond, time.Microsecond
	for _, tc := range []struct {
		name         string
		coalesce     time.Duration
		share        float64
		flight, busy int
		latency      time.Duration
		rate         float64 // frames per second
		want         time.Duration
	}{
		{"pipelined: sized to gather a batch per session", 0, 0, 256, 8, 80 * ms, 40000, coalesceBatch * 8 * 25 * us},
		{"slow arrivals: the latency share bounds it", 0, 0, 256, 8, 8 * ms, 8000, 2 * ms},
		{"capped", 0, 0, 256, 8, 400 * ms, 4000, DefaultCoalesce},
		{"requests queue, two per busy session", 0, 0, 128, 64, 40 * ms, 40000, 10 * ms},
		{"a lone request in flight is never held", 0, 0, 1, 1, 40 * ms, 40000, 0},
		{"one request per session, however many sessions: never held", 0, 0, 64, 64, 40 * ms, 40000, 0},
		{"fewer than two per busy session on average", 0, 0, 127, 64, 40 * ms, 40000, 0},
		{"sparse: fewer than coalesceGain frames expected", 0, 0, 256, 8, 8 * ms, 1000, 0},
		{"very dense: too short to pay", 0, 0, 256, 1, 80 * ms, 400000, 0},
		{"fast replies: too short to pay", 0, 0, 256, 8, 300 * us, 40000, 0},
		{"no replies yet", 0, 0, 256, 8, 0, 40000, 0},
		{"no rate yet", 0, 0, 256, 8, 8 * ms, 0, 0},
		{"nothing in flight", 0, 0, 0, 0, 8 * ms, 40000, 0},
		{"off", -1, 0, 256, 8, 40 * ms, 40000, 0},
		{"share", 5 * ms, 0.25, 64, 4, 16 * ms, 2000, 4 * ms},
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
		l := &loop{srv: srv, o: out{flight: tc.flight, busy: tc.busy, latency: tc.latency}, rate: tc.rate}
		if got := l.window(); got != tc.want {
			t.Errorf("%s: window %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBusySessions: out.busy counts the sessions with requests at their member, as
// requests go out and replies come back.
func TestBusySessions(t *testing.T) {
	var o out
	a, b := &relay{}, &relay{}
	a.addSent(&o, 3)
	b.addSent(&o, 1)
	a.addSent(&o, -1)
	if o.flight != 3 || o.busy != 2 {
		t.Fatalf("flight %d busy %d, want 3 and 2", o.flight, o.busy)
	}
	b.addSent(&o, -1)
	a.addSent(&o, -a.sent) // a session closed or moved with requests in flight
	if o.flight != 0 || o.busy != 0 {
		t.Fatalf("flight %d busy %d, want 0 and 0", o.flight, o.busy)
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
