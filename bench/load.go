//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/jute"
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

// Load is one closed-loop run: Sessions sessions, each keeping Concurrency requests in
// flight (pipelined on its connection), for Duration.
type Load struct {
	Addrs       []string // sessions are spread over these in turn
	Sessions    int
	Concurrency int
	Duration    time.Duration
	Mix         Mix
	ValueSize   int
	Root        string      // a znode this run may fill
	GoZK        bool        // drive go-zookeeper instead of raw jute (a second opinion)
	TLS         *tls.Config // sessions speak TLS (a TLS target)
}

// Result is what a run measured on the client side.
type Result struct {
	Ops       int
	Errors    int
	Elapsed   time.Duration
	Latencies []time.Duration // sorted
}

// OpsPerSec is throughput.
func (r Result) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

// Pct is a latency percentile (0..100).
func (r Result) Pct(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// Prepare creates the znodes every session reads and writes.
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
	for s := range l.Sessions {
		if err := create(fmt.Sprintf("%s/s%d", l.Root, s), make([]byte, l.ValueSize)); err != nil {
			return err
		}
	}
	return nil
}

type nopLog struct{}

func (nopLog) Printf(string, ...any) {}

// Run drives the load and returns the merged result.
func (l Load) Run(ctx context.Context) (Result, error) {
	var wg sync.WaitGroup
	results := make([]Result, l.Sessions)
	errs := make([]error, l.Sessions)
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	start := time.Now()
	for s := range l.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := l.Addrs[s%len(l.Addrs)]
			if l.GoZK && l.TLS == nil { // TLS targets take the raw driver
				results[s], errs[s] = l.goSession(ctx, addr, s)
			} else {
				results[s], errs[s] = l.rawSession(ctx, addr, s)
			}
		}()
	}
	wg.Wait()
	var out Result
	out.Elapsed = time.Since(start)
	for i, r := range results {
		if errs[i] != nil {
			return out, fmt.Errorf("session %d: %w", i, errs[i])
		}
		out.Ops += r.Ops
		out.Errors += r.Errors
		out.Latencies = append(out.Latencies, r.Latencies...)
	}
	slices.Sort(out.Latencies)
	return out, nil
}

type pending struct {
	start time.Time
	op    jute.OpCode
}

// rawSession is one pipelined session in raw jute: a writer keeps Concurrency requests in
// flight; the reader matches replies in order and frees a slot for each.
func (l Load) rawSession(ctx context.Context, addr string, id int) (Result, error) {
	c, fr, err := handshake(addr, 30*time.Second, l.TLS)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	node := fmt.Sprintf("%s/s%d", l.Root, id)
	value := make([]byte, l.ValueSize)
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	slots := make(chan struct{}, l.Concurrency)
	for range l.Concurrency {
		slots <- struct{}{}
	}
	var mu sync.Mutex
	var fifo []pending
	var created []string
	var res Result
	readErr := make(chan error, 1)
	go func() {
		for {
			frame, err := fr.Next()
			if err != nil {
				readErr <- err
				return
			}
			h, _ := jute.ParseReplyHeader(frame[4:])
			if h.Xid < 0 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if len(fifo) == 0 { // the closeSession reply
				mu.Unlock()
				continue
			}
			p := fifo[0]
			fifo = fifo[1:]
			res.Ops++
			if h.Err != 0 && !(p.op == jute.OpDelete && h.Err == jute.ErrNoNode) {
				res.Errors++
			}
			res.Latencies = append(res.Latencies, now.Sub(p.start))
			mu.Unlock()
			slots <- struct{}{}
		}
	}()
	bw := bufio.NewWriterSize(c, 64<<10)
	var xid int32
	seq := 0
	pick := func() (jute.OpCode, jute.Record) {
		n := rng.IntN(100)
		switch {
		case n < l.Mix.Get:
			return jute.OpGetData, &jute.GetDataRequest{Path: node}
		case n < l.Mix.Get+l.Mix.Set:
			return jute.OpSetData, &jute.SetDataRequest{Path: node, Data: value, Version: -1}
		case n < l.Mix.Get+l.Mix.Set+l.Mix.Create || len(created) == 0:
			seq++
			p := fmt.Sprintf("%s/c%d", node, seq)
			created = append(created, p)
			return jute.OpCreate, &jute.CreateRequest{Path: p, Data: value, ACL: []jute.ACL{{Perms: jute.PermAll, ID: jute.ID{Scheme: "world", ID: "anyone"}}}}
		default:
			p := created[0]
			created = created[1:]
			return jute.OpDelete, &jute.PathVersionRequest{Path: p, Version: -1}
		}
	}
	var buf []byte
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-slots:
		}
		// Fill every free slot, then flush once: pipelined.
		for {
			xid++
			op, body := pick()
			buf = jute.AppendFrame(buf[:0], &jute.RequestHeader{Xid: xid, Type: op}, body)
			mu.Lock()
			fifo = append(fifo, pending{time.Now(), op})
			mu.Unlock()
			bw.Write(buf)
			select {
			case <-slots:
				continue
			default:
			}
			break
		}
		if err := bw.Flush(); err != nil {
			return Result{}, err
		}
	}
	// Let the requests in flight finish, then close the session.
	deadline := time.After(10 * time.Second)
	for range l.Concurrency {
		select {
		case <-slots:
		case err := <-readErr:
			return Result{}, err
		case <-deadline:
			return Result{}, errors.New("requests still in flight 10 s after the run")
		}
	}
	xid++
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: jute.OpCloseSession}))
	mu.Lock()
	defer mu.Unlock()
	return res, nil
}

// goSession drives go-zookeeper with Concurrency goroutines on one connection.
func (l Load) goSession(ctx context.Context, addr string, id int) (Result, error) {
	c, _, err := zk.Connect([]string{addr}, 30*time.Second, zk.WithLogger(nopLog{}))
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	node := fmt.Sprintf("%s/s%d", l.Root, id)
	value := make([]byte, l.ValueSize)
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), uint64(w)))
			var mine []string
			for seq := 0; ctx.Err() == nil; seq++ {
				start := time.Now()
				var err error
				n := rng.IntN(100)
				switch {
				case n < l.Mix.Get:
					_, _, err = c.Get(node)
				case n < l.Mix.Get+l.Mix.Set:
					_, err = c.Set(node, value, -1)
				case n < l.Mix.Get+l.Mix.Set+l.Mix.Create || len(mine) == 0:
					p := fmt.Sprintf("%s/g%d-%d", node, w, seq)
					_, err = c.Create(p, value, 0, zk.WorldACL(zk.PermAll))
					mine = append(mine, p)
				default:
					err = c.Delete(mine[0], -1)
					mine = mine[1:]
				}
				d := time.Since(start)
				mu.Lock()
				res.Ops++
				if err != nil {
					res.Errors++
				}
				res.Latencies = append(res.Latencies, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res, nil
}

// Idle opens n raw sessions through addr and keeps them alive with pings until ctx
// ends. opened is called once all are established.
func Idle(ctx context.Context, addr string, n int, opened func()) error {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, _, err := handshake(addr, 30*time.Second, nil)
		if err != nil {
			return fmt.Errorf("idle session %d of %d: %w", i+1, n, err)
		}
		conns = append(conns, c)
	}
	opened()
	// Ping every 10 s (a third of the 30 s timeout), spread out; discard the replies.
	ping := jute.AppendFrame(nil, &jute.RequestHeader{Xid: jute.XidPing, Type: jute.OpPing})
	for _, c := range conns {
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	tick := time.NewTicker(10 * time.Second / time.Duration(max(1, n/100)))
	defer tick.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			for k := 0; k < 100 && i < len(conns); k++ {
				conns[i%len(conns)].Write(ping)
				i++
			}
			if i >= len(conns) {
				i = 0
			}
		}
	}
}
