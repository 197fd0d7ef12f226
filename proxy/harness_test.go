package proxy_test

import (
	"cmp"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
	"go.uber.org/goleak"
)

var shared *zktest.Ensemble

func TestMain(m *testing.M) {
	code := zktest.Main(m, zktest.Config{Members: 3}, &shared)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			os.Stderr.WriteString("goroutine leak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// gate is zkgate in front of an ensemble, on a free loopback port.
type gate struct {
	addr string
	srv  *proxy.Server
	mon  *health.Monitor
	logs *zktest.Buffer // everything zkgate logged, as JSON lines
}

// waitLog waits until zkgate has logged a line holding every one of subs.
func (g *gate) waitLog(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			if containsAll(line, subs...) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", subs, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gateSetup is what a test may change in the zkgate it starts.
type gateSetup struct {
	addrs    []string // members in this order; default the ensemble's
	breaker  breaker.Config
	ejection breaker.EjectionConfig
	health   health.Config
}

type gateOption func(*gateSetup)

func withBreaker(f func(*breaker.Config)) gateOption {
	return func(g *gateSetup) { f(&g.breaker) }
}

func withEjection(f func(*breaker.EjectionConfig)) gateOption {
	return func(g *gateSetup) { f(&g.ejection) }
}

func withMemberOrder(addrs []string) gateOption { return func(g *gateSetup) { g.addrs = addrs } }

func withHealth(c health.Config) gateOption { return func(g *gateSetup) { g.health = c } }

func startGate(t *testing.T, ens *zktest.Ensemble, cfg proxy.Config, opts ...gateOption) *gate {
	t.Helper()
	setup := gateSetup{addrs: ens.Addrs(), breaker: breaker.DefaultConfig(), ejection: breaker.DefaultEjectionConfig(),
		health: health.Config{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond, Fall: 1}}
	for _, o := range opts {
		o(&setup)
	}
	if cfg.Driver == "" {
		// ZKGATE_TEST_DRIVER=goroutines runs the tests on the goroutine driver (.ci/run
		// does, for the client tests).
		cfg.Driver = os.Getenv("ZKGATE_TEST_DRIVER")
	}
	logs := &zktest.Buffer{}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	mon := health.NewMonitor(setup.addrs, setup.health, log)
	mon.Start()
	srv := proxy.NewServer(cfg, mon, log,
		proxy.WithBreaker(breaker.NewEnsemble(cmp.Or(cfg.Name, "default"), setup.breaker, log)),
		proxy.WithEjector(breaker.NewEjector(setup.addrs, setup.ejection, log)))
	mon.Subscribe(srv.ApplyView)
	mon.SetProgress(srv.LastAnswer)
	mon.SetAnswered(srv.ProbeAnswered)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		mon.Close()
	})
	return &gate{addr: ln.Addr().String(), srv: srv, mon: mon, logs: logs}
}

type quietLogger struct{ t *testing.T }

func (q quietLogger) Printf(format string, args ...any) {}

// connect opens a go-zookeeper session through addr and waits until it has a session.
func connect(t *testing.T, addr string) (*zk.Conn, <-chan zk.Event) {
	t.Helper()
	c, ev, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(quietLogger{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-ev:
			if e.State == zk.StateHasSession {
				return c, ev
			}
		case <-deadline:
			t.Fatalf("no session through %s (state %v)", addr, c.State())
		}
	}
}
