//go:build linux

package main

import (
	"slices"
	"testing"
)

func TestParseScenarios(t *testing.T) {
	good := []struct {
		in   string
		want []scenario
	}{
		{"many=64x4", []scenario{{name: "many", sessions: 64, concurrency: 4}}},
		{"latency=1x1,active=9900x1@1", []scenario{{name: "latency", sessions: 1, concurrency: 1}, {name: "active", sessions: 9900, concurrency: 1, rate: 1}}},
		{"slow=10x2@0.5", []scenario{{name: "slow", sessions: 10, concurrency: 2, rate: 0.5}}},
	}
	for _, c := range good {
		got, err := parseScenarios(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseScenarios(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "many", "many=64", "=64x4", "many=0x4", "many=64x0", "many=64x4junk",
		"a=1x1@", "a=1x1@0", "a=1x1@-1", "a=1x1@NaN", "a=1x1@Inf", "a=1x1@1@2"} {
		if got, err := parseScenarios(in); err == nil {
			t.Errorf("parseScenarios(%q) = %+v, want an error", in, got)
		}
	}
}

func TestScenarioLabel(t *testing.T) {
	for _, c := range []struct {
		sc   scenario
		want string
	}{
		{scenario{name: "many", sessions: 64, concurrency: 4}, "many (64x4)"},
		{scenario{name: "active", sessions: 9900, concurrency: 1, rate: 1}, "active (9900x1@1)"},
		{scenario{name: "slow", sessions: 10, concurrency: 2, rate: 0.5}, "slow (10x2@0.5)"},
	} {
		if got := c.sc.label(); got != c.want {
			t.Errorf("label() = %q, want %q", got, c.want)
		}
	}
}
