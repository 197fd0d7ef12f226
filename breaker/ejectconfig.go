package breaker

import (
	"fmt"
	"time"
)

// EjectionConfig holds member ejection settings (the config file's `ejection:` section).
type EjectionConfig struct {
	Enabled                    bool
	ConsecutiveConnectFailures int           // in a row, with no success between
	FailureRatio               float64       // failed/requests in the window
	MinRequests                int           // per member in the window before ratio or latency count
	Window                     time.Duration // the member statistics window
	LatencyFactor              float64       // mean latency over the peers' median that ejects
	LatencyFloor               time.Duration // a mean below this never ejects
	MinSessions                int           // distinct sessions behind a member's latency figure before it counts
	StalledRatio               float64       // recent time share with a request stalled past slow_call that ejects; 0 = off
	BaseTime                   time.Duration // first ejection; doubles with each repeat
	MaxTime                    time.Duration // cap on the ejection time
}

// DefaultEjectionConfig is member ejection as shipped.
func DefaultEjectionConfig() EjectionConfig {
	return EjectionConfig{
		Enabled:                    true,
		ConsecutiveConnectFailures: 3,
		FailureRatio:               0.5,
		MinRequests:                10,
		Window:                     10 * time.Second,
		LatencyFactor:              5,
		LatencyFloor:               250 * time.Millisecond, // above a JVM's ordinary GC pauses (100-200 ms)
		MinSessions:                3,
		StalledRatio:               0.25,
		BaseTime:                   5 * time.Second,
		MaxTime:                    60 * time.Second,
	}
}

// Validate names the first setting that cannot work.
func (c EjectionConfig) Validate() error {
	switch {
	case c.ConsecutiveConnectFailures < 1:
		return fmt.Errorf("consecutive_connect_failures %d: want at least 1", c.ConsecutiveConnectFailures)
	case c.FailureRatio <= 0 || c.FailureRatio > 1:
		return fmt.Errorf("failure_ratio %v: want a ratio in (0, 1]", c.FailureRatio)
	case c.MinRequests < 1:
		return fmt.Errorf("min_requests %d: want at least 1", c.MinRequests)
	case c.Window <= 0:
		return fmt.Errorf("window %v: want a positive duration", c.Window)
	case c.MinSessions < 1:
		return fmt.Errorf("min_sessions %d: want at least 1", c.MinSessions)
	case c.LatencyFactor <= 1:
		return fmt.Errorf("latency_factor %v: want more than 1", c.LatencyFactor)
	case c.StalledRatio < 0 || c.StalledRatio > 1:
		return fmt.Errorf("stalled_ratio %v: want a ratio in [0, 1] (0 turns it off)", c.StalledRatio)
	case c.BaseTime <= 0:
		return fmt.Errorf("base_time %v: want a positive duration", c.BaseTime)
	case c.MaxTime < c.BaseTime:
		return fmt.Errorf("max_time %v: want at least base_time (%v)", c.MaxTime, c.BaseTime)
	}
	return nil
}
