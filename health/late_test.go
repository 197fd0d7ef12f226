package health_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
)

// A probe with no answer in time is a late answer when the member kept answering its
// sessions meanwhile (a busy member, a busy machine): the member stays serving. With no
// such evidence, the same timeouts take it down as before; a refused connection (no
// answer at all) does too, evidence or not.
func TestLateProbeIsNotDown(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     error
		answered bool // the data path sees the member answer sessions
		down     bool
	}{
		{"timeouts, sessions answered", fmt.Errorf("srvr m1: read: %w", os.ErrDeadlineExceeded), true, false},
		{"timeouts, context deadline, sessions answered", fmt.Errorf("srvr m1: %w", context.DeadlineExceeded), true, false},
		{"timeouts, no session answered", fmt.Errorf("srvr m1: read: %w", os.ErrDeadlineExceeded), false, true},
		{"refused, sessions answered", fmt.Errorf("srvr m1: dial: connection refused"), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			var mu sync.Mutex
			probes, timeouts := 0, []time.Duration{}
			prober := func(ctx context.Context, addr string, timeout time.Duration) (health.Srvr, error) {
				if addr == "m1" && failing.Load() {
					mu.Lock()
					probes++
					timeouts = append(timeouts, timeout)
					mu.Unlock()
					return health.Srvr{}, tc.fail
				}
				return health.Srvr{Mode: "follower", Zxid: 5}, nil
			}
			cfg := health.Config{Interval: 5 * time.Millisecond, Timeout: 20 * time.Millisecond, Fall: 2}
			mon := health.NewMonitor([]string{"m1", "m2"}, cfg, zerolog.Nop(), health.WithProber(prober))
			mon.SetProgress(func(addr string) time.Time {
				if tc.answered {
					return time.Now() // answers flowing on every session
				}
				return time.Time{}
			})
			mon.Start()
			defer mon.Close()
			failing.Store(true)
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				n := probes
				mu.Unlock()
				st, _ := mon.View().Member("m1")
				if tc.down && st.Status == health.StatusDown {
					break
				}
				if !tc.down && st.Status != health.StatusServing {
					t.Fatalf("m1 %v after %d late probes: %s", st.Status, n, st.LastError)
				}
				if !tc.down && n >= 10 {
					if st.Mode != "follower" || st.Zxid != 5 {
						t.Fatalf("a late member lost its role or zxid: %+v", st)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %d probes m1 is %v (%s), want down=%v", n, st.Status, st.LastError, tc.down)
				}
				time.Sleep(2 * time.Millisecond)
			}
			if health.IsTimeout(tc.fail) {
				mu.Lock()
				defer mu.Unlock()
				if len(timeouts) < 2 || timeouts[1] != cfg.Timeout*3/2 {
					t.Fatalf("probe timeouts %v: a probe after a timeout gets half as much time again", timeouts)
				}
			}
		})
	}
}
