package config

import (
	"fmt"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"go.yaml.in/yaml/v3"
)

// The file's words for the breaker's and the ejector's settings. The breaker package
// knows nothing of the file: these sections say how each key is spelled and read, and
// convert to breaker's types.

// Breaker is the `breaker:` section (breaker.Config).
type Breaker struct {
	Enabled           bool          `yaml:"enabled"`
	FailureRatio      float64       `yaml:"failure_ratio"`
	MinRequests       uint          `yaml:"min_requests"`
	Window            time.Duration `yaml:"window"`
	SlowCall          time.Duration `yaml:"slow_call"`
	OpenFor           time.Duration `yaml:"open_for"`
	HalfOpenProbes    uint          `yaml:"half_open_probes"`
	HalfOpenAdmission float64       `yaml:"half_open_admission"`
	RejectCode        RejectCode    `yaml:"reject_code"`
}

// Ejection is the `ejection:` section (breaker.EjectionConfig).
type Ejection struct {
	Enabled                    bool          `yaml:"enabled"`
	ConsecutiveConnectFailures int           `yaml:"consecutive_connect_failures"`
	FailureRatio               float64       `yaml:"failure_ratio"`
	MinRequests                int           `yaml:"min_requests"`
	Window                     time.Duration `yaml:"window"`
	LatencyFactor              float64       `yaml:"latency_factor"`
	LatencyFloor               time.Duration `yaml:"latency_floor"`
	MinSessions                int           `yaml:"min_sessions"`
	StalledRatio               float64       `yaml:"stalled_ratio"`
	BaseTime                   time.Duration `yaml:"base_time"`
	MaxTime                    time.Duration `yaml:"max_time"`
}

func breakerSection(c breaker.Config) Breaker {
	return Breaker{Enabled: c.Enabled, FailureRatio: c.FailureRatio, MinRequests: c.MinRequests, Window: c.Window,
		SlowCall: c.SlowCall, OpenFor: c.OpenFor, HalfOpenProbes: c.HalfOpenProbes,
		HalfOpenAdmission: c.HalfOpenAdmission, RejectCode: RejectCode(c.RejectCode)}
}

// Config is the section as the breaker takes it.
func (b Breaker) Config() breaker.Config {
	return breaker.Config{Enabled: b.Enabled, FailureRatio: b.FailureRatio, MinRequests: b.MinRequests, Window: b.Window,
		SlowCall: b.SlowCall, OpenFor: b.OpenFor, HalfOpenProbes: b.HalfOpenProbes,
		HalfOpenAdmission: b.HalfOpenAdmission, RejectCode: breaker.RejectCode(b.RejectCode)}
}

// Config is the section as the ejector takes it.
func (e Ejection) Config() breaker.EjectionConfig { return breaker.EjectionConfig(e) }

// RejectCode is breaker.reject_code: "operation_timeout" (-7), "throttled" (-127) or a
// negative number. It is a flag value too (--breaker-reject-code).
type RejectCode breaker.RejectCode

// String gives the name where there is one.
func (r RejectCode) String() string { return breaker.RejectCode(r).String() }

// Set implements pflag.Value.
func (r *RejectCode) Set(s string) error {
	c, err := breaker.ParseRejectCode(s)
	if err == nil {
		*r = RejectCode(c)
	}
	return err
}

// Type implements pflag.Value.
func (r *RejectCode) Type() string { return "code" }

// UnmarshalYAML reads it by name or number, and says on which line it is wrong.
func (r *RejectCode) UnmarshalYAML(n *yaml.Node) error {
	if err := r.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// Hotspots finds the heaviest clients, sessions and path prefixes (proxy.Hotspots).
type Hotspots struct {
	Enabled   bool          `yaml:"enabled"`
	PathDepth int           `yaml:"path_depth"` // path components kept: /a/b/c at 2 is /a/b
	Capacity  int           `yaml:"capacity"`   // keys each sketch keeps (fixed memory)
	Window    time.Duration `yaml:"window"`     // rates are over the last complete window
}
