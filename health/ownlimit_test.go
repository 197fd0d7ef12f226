package health_test

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
)

// TestOwnLimitIsNotTheMembers: a probe zkgate cannot make because it is out of file
// descriptors leaves the member's status alone (it was never asked) and is logged as
// zkgate's own limit, once per period.
func TestOwnLimitIsNotTheMembers(t *testing.T) {
	var exhausted atomic.Bool
	var refused atomic.Int64 // probes that could not get a socket
	probe := func(ctx context.Context, addr string, timeout time.Duration) (health.Srvr, error) {
		if exhausted.Load() {
			refused.Add(1)
			return health.Srvr{}, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		return health.Srvr{Mode: "follower", Zxid: 1}, nil
	}
	logs := &zktest.Buffer{}
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	mon := health.NewMonitor(addrs, health.Config{Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 1},
		zerolog.New(logs), health.WithProber(probe))
	mon.Start()
	defer mon.Close()
	waitView(t, mon, 5*time.Second, "members serving", func(v *health.View) bool { return status(v, addrs[0]).Serving })
	exhausted.Store(true)
	zktest.WaitFor(t, 5*time.Second, "the own-limit log line", func() bool {
		return strings.Count(logs.String(), "its own limit") >= 1
	})
	zktest.WaitFor(t, 5*time.Second, "30 probes without a socket", func() bool { return refused.Load() >= 30 })
	for _, a := range addrs {
		if st := status(mon.View(), a); st.Status != health.StatusServing {
			t.Fatalf("%s: %v after probes that could not get a socket, want serving", a, st.Status)
		}
	}
	if n := strings.Count(logs.String(), "its own limit"); n != 1 {
		t.Fatalf("%d own-limit lines within the period, want 1:\n%s", n, logs)
	}
	if !health.IsOwnLimit(&net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.ENFILE)}) || health.IsOwnLimit(syscall.ECONNREFUSED) {
		t.Fatal("IsOwnLimit classifies ENFILE and ECONNREFUSED wrongly")
	}
}
