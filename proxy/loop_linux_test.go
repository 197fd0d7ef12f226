//go:build linux

package proxy

import (
	"testing"
	"time"
)

// TestCoalesceWindow: how long a loop waits before reading, from its requests in flight
// and their average reply latency.
func TestCoalesceWindow(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name     string
		coalesce time.Duration
		share    float64
		flight   int
		latency  time.Duration
		want     time.Duration
	}{
		{"defaults, queueing", 0, 0, 256, 8 * ms, 1 * ms},
		{"capped", 0, 0, 256, 40 * ms, DefaultCoalesce},
		{"light traffic is left alone", 0, 0, coalesceFrom - 1, 40 * ms, 0},
		{"fast replies: too short to pay", 0, 0, 256, 1 * ms, 0},
		{"no replies yet", 0, 0, 256, 0, 0},
		{"off", -1, 0, 256, 40 * ms, 0},
		{"share", 5 * ms, 0.25, 64, 16 * ms, 4 * ms},
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
		l := &loop{srv: srv, o: out{flight: tc.flight, latency: tc.latency}}
		if got := l.window(); got != tc.want {
			t.Errorf("%s: window %v, want %v", tc.name, got, tc.want)
		}
	}
}
