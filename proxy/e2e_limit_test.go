package proxy_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// A noisy session writing at 10× its quota while 20 well-behaved sessions work: the
// noisy one's excess is answered with the reject code by zkgate and never reaches the
// ensemble; the others see no reject, and the breaker stays closed. The latency figures
// are logged (speed targets live in the benchmarks, not in tests).
func TestNoisyClientLimited(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{Limits: proxy.Limits{SessionRate: 50, SessionBurst: 10}})
	const good = 20
	conns := make([]*zk.Conn, good)
	for i := range conns {
		conns[i], _ = connect(t, g.addr)
		if _, err := conns[i].Create(fmt.Sprintf("/noisy-good-%d-%d", i, time.Now().UnixNano()), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	// Each well-behaved session writes its own znode 10 times a second.
	work := func(d time.Duration) (lat []time.Duration, errs []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, c := range conns {
			path := fmt.Sprintf("/noisy-w-%d", i)
			c.Create(path, nil, 0, zk.WorldACL(zk.PermAll))
			wg.Go(func() {
				for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
					start := time.Now()
					_, err := c.Set(path, []byte("v"), -1)
					mu.Lock()
					lat = append(lat, time.Since(start))
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return lat, errs
	}
	p99 := func(lat []time.Duration) time.Duration {
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	quiet, errs := work(3 * time.Second)
	if len(errs) > 0 {
		t.Fatalf("unloaded: %d errors: %v", len(errs), errs[0])
	}

	noisy, _ := connect(t, g.addr)
	noisy.Create("/noisy", nil, 0, zk.WorldACL(zk.PermAll))
	stop := make(chan struct{})
	var sent, rejected atomic.Int64
	var nwg sync.WaitGroup
	for range 10 { // 10 writers at 50/s each: 500/s, 10× the session's 50/s
		nwg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				sent.Add(1)
				if _, err := noisy.Set("/noisy", []byte("x"), -1); err != nil && strings.HasSuffix(err.Error(), ": -7") {
					rejected.Add(1)
				}
			}
		})
	}
	loaded, errs := work(5 * time.Second)
	close(stop)
	nwg.Wait()

	t.Logf("well-behaved p99: %v unloaded, %v with the noisy session (%d and %d writes); noisy: %d sent, %d rejected",
		p99(quiet), p99(loaded), len(quiet), len(loaded), sent.Load(), rejected.Load())
	if len(errs) > 0 {
		t.Fatalf("well-behaved sessions got %d errors with the noisy one at work: %v", len(errs), errs[0])
	}
	if rejected.Load() < sent.Load()/2 {
		t.Fatalf("the noisy session was not held to its quota: %d of %d rejected", rejected.Load(), sent.Load())
	}
	if st := g.srv.Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker %v", st)
	}
	if tot := g.srv.Totals(); tot.Limited != uint64(rejected.Load()) {
		t.Fatalf("zkgate counted %d limited requests, the client saw %d", tot.Limited, rejected.Load())
	}
	if lc := g.srv.LimitedClients(); len(lc) != 1 || lc[0].Limited != uint64(rejected.Load()) {
		t.Fatalf("limited clients %+v", lc)
	}
	// Logged once per episode, not per request.
	if n := strings.Count(g.logs.String(), "client over its limit"); n < 1 || n > 10 {
		t.Fatalf("%d log lines for %d limited requests", n, rejected.Load())
	}
}
