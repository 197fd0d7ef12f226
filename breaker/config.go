// Package breaker decides when an ensemble stops taking traffic and when a single member
// is taken out of rotation. It knows nothing of sockets: the proxy reports outcomes and
// asks for permission, and health verdicts come in as plain booleans.
//
//   - Ensemble is the per-ensemble circuit breaker, on failsafe-go's circuit breaker with a
//     time-based failure-rate threshold. A slow reply counts as a failure, as does a
//     system error (-1..-99), a request whose member connection died, and a member
//     connect that failed. Application errors (-100 and below) never count.
//   - Ejector is outlier detection per member: consecutive connect failures, a failure
//     ratio, latency far above the peers', or health down eject a member for a time that
//     grows with each repeat, never more than a minority of the ensemble at once.
package breaker

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Config holds the ensemble breaker's settings (the config file's `breaker:` section).
type Config struct {
	Enabled           bool
	FailureRatio      float64       // failures/requests in the window that opens it
	MinRequests       uint          // requests in the window before the ratio counts
	Window            time.Duration // the failure-rate window
	SlowCall          time.Duration // a reply later than this is a failure
	OpenFor           time.Duration // time open before half-open is tried
	HalfOpenProbes    uint          // successes in half-open that close it
	HalfOpenAdmission float64       // new sessions per second while half-open
	RejectCode        RejectCode    // answer to requests refused while open
}

// DefaultConfig is the breaker as shipped.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		FailureRatio:      0.5,
		MinRequests:       20,
		Window:            10 * time.Second,
		SlowCall:          500 * time.Millisecond,
		OpenFor:           5 * time.Second,
		HalfOpenProbes:    5,
		HalfOpenAdmission: 50,
		RejectCode:        RejectCode(jute.ErrOperationTimeout),
	}
}

// Validate names the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.FailureRatio <= 0 || c.FailureRatio > 1:
		return fmt.Errorf("failure_ratio %v: want a ratio in (0, 1]", c.FailureRatio)
	case c.MinRequests < 1:
		return fmt.Errorf("min_requests %d: want at least 1", c.MinRequests)
	case c.Window <= 0:
		return fmt.Errorf("window %v: want a positive duration", c.Window)
	case c.SlowCall <= 0:
		return fmt.Errorf("slow_call %v: want a positive duration", c.SlowCall)
	case c.OpenFor <= 0:
		return fmt.Errorf("open_for %v: want a positive duration", c.OpenFor)
	case c.HalfOpenProbes < 1:
		return fmt.Errorf("half_open_probes %d: want at least 1", c.HalfOpenProbes)
	case c.HalfOpenAdmission <= 0:
		return fmt.Errorf("half_open_admission %v: want new sessions per second > 0", c.HalfOpenAdmission)
	case jute.ErrCode(c.RejectCode) >= 0:
		return fmt.Errorf("reject_code %d: want a ZooKeeper error code (negative)", c.RejectCode)
	}
	return nil
}

// RejectCode is the error code zkgate answers refused requests with. It reads
// "operation_timeout" (-7, which every client knows), "throttled" (-127, for clients
// that know it) or a number.
type RejectCode jute.ErrCode

var rejectNames = map[string]jute.ErrCode{
	"operation_timeout": jute.ErrOperationTimeout,
	"throttled":         jute.ErrThrottledOp,
}

// ParseRejectCode reads a reject code by name or number.
func ParseRejectCode(s string) (RejectCode, error) {
	if c, ok := rejectNames[strings.ToLower(strings.TrimSpace(s))]; ok {
		return RejectCode(c), nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil || n >= 0 {
		return 0, fmt.Errorf("reject code %q: want operation_timeout, throttled or a negative number", s)
	}
	return RejectCode(n), nil
}

// String gives the name where there is one.
func (r RejectCode) String() string {
	for name, c := range rejectNames {
		if c == jute.ErrCode(r) {
			return name
		}
	}
	return strconv.Itoa(int(r))
}

// MarshalText writes it by name.
func (r RejectCode) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Outcome is how one request counts for the breakers.
type Outcome uint8

// Outcomes.
const (
	Success Outcome = iota // a reply in time, application errors included
	Failed                 // a system error, or the member connection died first
	Slow                   // a reply (or none yet) later than the slow-call threshold
)

// String names the outcome.
func (o Outcome) String() string {
	return [...]string{"success", "failed", "slow"}[o]
}

// Classify decides how a request counts. lost says the member connection died before
// the reply. Application errors (NONODE, NODEEXISTS, BADVERSION, NOAUTH, ...) are
// successes: the ensemble did its job. THROTTLEDOP (-127) is the one code below -100
// that counts as a failure: the server refused the work because it is overloaded.
func Classify(code jute.ErrCode, latency, slowCall time.Duration, lost bool) Outcome {
	switch {
	case lost || code.System() || code == jute.ErrThrottledOp:
		return Failed
	case latency > slowCall:
		return Slow
	}
	return Success
}
