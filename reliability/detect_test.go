//go:build linux

package main

import (
	"slices"
	"testing"
)

func TestParseSeries(t *testing.T) {
	body := `# HELP zkgate_member_up 1 when the member answers its health probe.
# TYPE zkgate_member_up gauge
zkgate_member_up{member="127.0.0.1:2181"} 1
zkgate_member_up{member="127.0.0.1:2182"} 0
zkgate_member_upper 7
zkgate_session_moves_total{ensemble="rel",outcome="moved"} 12
zkgate_breaker_transitions_total{ensemble="rel",to="open"} 1
zkgate_stalled_requests_total 40
`
	got, err := parseSeries(body, detectorMetrics)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`zkgate_member_up{member="127.0.0.1:2181"}`:                  1,
		`zkgate_member_up{member="127.0.0.1:2182"}`:                  0,
		`zkgate_session_moves_total{ensemble="rel",outcome="moved"}`: 12,
		`zkgate_breaker_transitions_total{ensemble="rel",to="open"}`: 1,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestReactions(t *testing.T) {
	const (
		up1   = `zkgate_member_up{member="a"}`
		ej1   = `zkgate_member_ejected{member="a"}`
		moves = `zkgate_session_moves_total{ensemble="rel",outcome="moved"}`
		open  = `zkgate_breaker_transitions_total{ensemble="rel",to="open"}`
	)
	base := map[string]float64{up1: 1, ej1: 0, moves: 3}
	for _, tc := range []struct {
		name string
		now  map[string]float64
		want []string
	}{
		{"nothing changed", map[string]float64{up1: 1, ej1: 0, moves: 3}, nil},
		{"member down", map[string]float64{up1: 0, ej1: 0, moves: 3}, []string{"member down"}},
		{"member ejected", map[string]float64{up1: 1, ej1: 1, moves: 3}, []string{"member ejected"}},
		{"a move", map[string]float64{up1: 1, ej1: 0, moves: 4}, []string{"session moved"}},
		{"a new move series", map[string]float64{up1: 1, ej1: 0, moves: 3,
			`zkgate_session_moves_total{ensemble="rel",outcome="closed-unsafe-in-flight"}`: 1}, []string{"session closed-unsafe-in-flight"}},
		{"the breaker opened", map[string]float64{up1: 1, ej1: 0, moves: 3, open: 1}, []string{"breaker open"}},
		{"two at once", map[string]float64{up1: 0, ej1: 0, moves: 5}, []string{"member down", "session moved"}},
		{"a member back up is no reaction", map[string]float64{up1: 1, ej1: 0, moves: 3, `zkgate_member_up{member="b"}`: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := reactions(base, tc.now)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
