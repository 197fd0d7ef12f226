//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// Mix is the share of each operation, in percent.
type Mix struct{ Get, Set, Create, Delete int }

// ParseMix reads "get=70,set=20,create=5,delete=5".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var n int
		if _, err := fmt.Sscan(v, &n); !ok || err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: want a list like get=70,set=30", s)
		}
		switch k {
		case "get":
			m.Get = n
		case "set":
			m.Set = n
		case "create":
			m.Create = n
		case "delete":
			m.Delete = n
		default:
			return m, fmt.Errorf("mix: unknown op %q (get, set, create, delete)", k)
		}
	}
	if m.Get+m.Set+m.Create+m.Delete != 100 {
		return m, fmt.Errorf("mix %q: shares add up to %d, want 100", s, m.Get+m.Set+m.Create+m.Delete)
	}
	return m, nil
}

// Load is one run of Sessions sessions for Duration. Closed loop (Rate 0): each session
// keeps Concurrency requests in flight, pipelined on its connection. Paced (Rate > 0):
// each session sends Rate requests per second on a fixed schedule that starts at a random
// phase, with at most Concurrency in flight; a session whose replies come late sends late
// (catching up as far as Concurrency allows), and its achieved rate shows it.
type Load struct {
	Addrs       []string // sessions are spread over these in turn
	Sessions    int
	Concurrency int
	Rate        float64 // requests per second per session; 0 is the closed loop
	Duration    time.Duration
	Mix         Mix
	ValueSize   int
	Root        string      // a znode this run may fill
	GoZK        bool        // drive go-zookeeper instead of raw jute (a second opinion)
	TLS         *tls.Config // sessions speak TLS (a TLS target)
}

// Result is what a run measured on the client side, over the load alone (sessions open
// before it and close after it).
type Result struct {
	Ops       int
	Errors    int
	Sessions  int
	Lost      int // sessions whose connection ended during the run (their requests in flight are errors)
	MinOK     int // the fewest operations one session completed without an error
	Elapsed   time.Duration
	Opening   time.Duration   // opening every session, before the run
	Latencies []time.Duration // sorted
}

// OpsPerSec is throughput.
func (r Result) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

// PerSession is the achieved rate of the average session, and of the slowest, in
// operations per second answered without an error: a proxy that fails requests fast (an
// open breaker) keeps ops/s up, not this.
func (r Result) PerSession() (mean, slowest float64) {
	if r.Sessions == 0 {
		return 0, 0
	}
	secs := r.Elapsed.Seconds()
	return float64(r.Ops-r.Errors) / secs / float64(r.Sessions), float64(r.MinOK) / secs
}

// Pct is a latency percentile (0..100).
func (r Result) Pct(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// Prepare creates the znodes every session reads and writes, a thousand to a multi.
func (l Load) Prepare(addr string) error {
	c, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogger(nopLog{}))
	if err != nil {
		return err
	}
	defer c.Close()
	acl := zk.WorldACL(zk.PermAll)
	create := func(p string, data []byte) error {
		var err error
		for try := 0; try < 100; try++ {
			if _, err = c.Create(p, data, 0, acl); err == nil || errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("create %s: %w", p, err)
	}
	if err := create(l.Root, nil); err != nil {
		return err
	}
	value := make([]byte, l.ValueSize)
	for first := 0; first < l.Sessions; first += 1000 {
		var ops []any
		for s := first; s < min(first+1000, l.Sessions); s++ {
			ops = append(ops, &zk.CreateRequest{Path: fmt.Sprintf("%s/s%d", l.Root, s), Data: value, Acl: acl})
		}
		if _, err := c.Multi(ops...); err == nil {
			continue
		}
		for _, op := range ops { // a connection blip or a node that exists: one at a time
			if err := create(op.(*zk.CreateRequest).Path, value); err != nil {
				return err
			}
		}
	}
	return nil
}

type nopLog struct{}

func (nopLog) Printf(string, ...any) {}

// openAtOnce bounds the handshakes in progress while a run opens its sessions: each is a
// quorum write, and thousands at once would only queue in the members.
const openAtOnce = 64

// session is one open session of a run, on either driver.
type session interface {
	// drive runs the load from start until ctx ends, then waits for the requests in flight.
	drive(ctx context.Context, l Load, id int, start time.Time) (Result, error)
	// close ends the session (closeSession, answered or not) and its connection.
	close()
}

// Run opens every session, then calls started, drives the load for Duration, lets the
// requests in flight finish, calls stopped and closes the sessions. What started and
// stopped bracket is the load alone: opening and closing a session are quorum writes, and
// at 10,000 sessions they would outweigh the load in the proxy's CPU per op.
func (l Load) Run(ctx context.Context, started, stopped func()) (Result, error) {
	if l.GoZK && l.Rate > 0 && l.TLS == nil {
		return Result{}, errors.New("paced load takes the raw driver (drop -gozk)")
	}
	sessions := make([]session, l.Sessions)
	defer func() {
		var wg sync.WaitGroup
		work := make(chan session)
		for range openAtOnce {
			wg.Go(func() {
				for s := range work {
					s.close()
				}
			})
		}
		for _, s := range sessions {
			if s != nil {
				work <- s
			}
		}
		close(work)
		wg.Wait()
	}()
	var out Result
	opening := time.Now()
	if err := l.open(ctx, sessions); err != nil {
		return out, err
	}
	out.Opening = time.Since(opening)

	results := make([]Result, l.Sessions)
	errs := make([]error, l.Sessions)
	started()
	start := time.Now()
	rctx, cancel := context.WithDeadline(ctx, start.Add(l.Duration))
	defer cancel()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() { results[i], errs[i] = s.drive(rctx, l, i, start) })
	}
	wg.Wait()
	out.Elapsed = time.Since(start)
	stopped()
	out.Sessions, out.MinOK = l.Sessions, -1
	for i, r := range results {
		if errs[i] != nil {
			return out, fmt.Errorf("session %d: %w", i, errs[i])
		}
		out.Ops += r.Ops
		out.Errors += r.Errors
		out.Lost += r.Lost
		out.Latencies = append(out.Latencies, r.Latencies...)
		if ok := r.Ops - r.Errors; out.MinOK < 0 || ok < out.MinOK {
			out.MinOK = ok
		}
	}
	slices.Sort(out.Latencies)
	return out, nil
}

// open fills sessions, openAtOnce handshakes at a time; on an error the ones opened stay
// in sessions for the caller to close.
func (l Load) open(ctx context.Context, sessions []session) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, openAtOnce)
	for w := range openAtOnce {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(sessions) && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				addr := l.Addrs[i%len(l.Addrs)]
				var err error
				if l.GoZK && l.TLS == nil { // TLS targets take the raw driver
					sessions[i], err = openGoSession(addr)
				} else {
					sessions[i], err = openRawSession(addr, l.Concurrency, l.TLS)
				}
				if err != nil {
					errs[w] = fmt.Errorf("opening session %d of %d: %w", i+1, len(sessions), err)
					next.Store(int64(len(sessions))) // stop the other workers
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
