//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// hostileResult is one hostile step: what it did, its figures, and what the well-behaved
// sessions saw meanwhile.
type hostileResult struct {
	name, what, figures string
	witness             witnessStats
	problems            []string
}

func (h *hostileResult) fail(format string, args ...any) {
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// hostileGateArgs: the defaults, except a handshake timeout long enough that the stalled
// connections are all still held when they are measured.
var hostileGateArgs = []string{"--log-level", "info", "--handshake-timeout", "60s"}

// hostileSuite runs every hostile step against one zkgate, while witness sessions keep
// working through it. Each step must cost only its own connections.
func hostileSuite(ctx context.Context, dir, bin string, logf func(string, ...any)) ([]hostileResult, error) {
	hdir := filepath.Join(dir, "hostile")
	if err := mkdir(hdir); err != nil {
		return nil, err
	}
	ens, err := zktest.New(ensembleConfig(filepath.Join(hdir, "ensemble")))
	if err != nil {
		return nil, err
	}
	defer ens.Close()
	g, err := startGate(ctx, bin, hdir, 1, ens.Addrs(), hostileGateArgs...)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	admin, _, err := zk.Connect(ens.Addrs(), sessionTimeout, zk.WithLogger(quiet{}))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := waitUntil(ctx, 30*time.Second, "the admin session", func() bool { return admin.State() == zk.StateHasSession }); err != nil {
		return nil, err
	}
	acl := zk.WorldACL(zk.PermAll)
	if _, err := admin.Multi(&zk.CreateRequest{Path: "/hostile", Acl: acl},
		&zk.CreateRequest{Path: "/hostile/big", Data: make([]byte, 512<<10), Acl: acl}); err != nil {
		return nil, err
	}
	w, err := startWitness(ctx, g.listen, 10)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	steps := []struct {
		name, what string
		run        func(context.Context, *gate, *hostileResult) error
	}{
		{"stall", "15,000 connections send 2 bytes and stall", stallStep},
		{"handshakes", "10,000 handshakes at once (each closes after its ConnectResponse)", handshakeStep},
		{"max-frames", "100 sessions each send a 1 MB frame at once (getData of a 1 MB path: just under jute.maxbuffer)", bigFrameStep},
		{"bad-frames", "garbage, an oversized length, a negative length, a truncated frame, an unknown opcode, mid-session", badFrameStep},
		{"non-reader", "a session pipelines getData of a 512 KiB znode for 10 s and never reads", nonReaderStep},
	}
	var out []hostileResult
	for _, s := range steps {
		logf("hostile: %s: %s", s.name, s.what)
		h := hostileResult{name: s.name, what: s.what}
		w.mark()
		if err := s.run(ctx, g, &h); err != nil {
			h.fail("%v", err)
		}
		// A last round of witness operations after the step, so that a step that broke
		// zkgate shows here too.
		w.waitOps(ctx, 20)
		h.witness = w.mark()
		if h.witness.failed > 0 {
			h.fail("%d of %d witness operations failed: %v", h.witness.failed, h.witness.ops, h.witness.errors)
		}
		if out, err := zktest.FourLetter(g.listen, "ruok", 5*time.Second); out != "imok" {
			h.fail("zkgate does not answer ruok after the step: %q %v", out, err)
		}
		logf("hostile: %s: %s; witness %d ops, %d failed, p99 %v", s.name, h.figures, h.witness.ops, h.witness.failed, h.witness.p99)
		out = append(out, h)
	}
	return out, nil
}

// stallStep opens 15,000 connections that send 2 bytes of a frame length and stop.
func stallStep(ctx context.Context, g *gate, h *hostileResult) error {
	const n = 15000
	ruok0 := ruokLatency(g.listen, 20)
	rss0, err := g.rss()
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var dialErrs int
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", g.listen, 10*time.Second)
			if err == nil {
				_, err = c.Write([]byte{0, 0})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				dialErrs++
				if c != nil {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	if dialErrs > 0 {
		h.fail("%d of %d connections could not be opened", dialErrs, n)
	}
	// zkgate has accepted them all when its RSS stops growing; ruok goes through the same
	// accept queue, so one answered after the last dial was accepted after it.
	ruok := ruokLatency(g.listen, 20)
	rss1, err := g.rss()
	if err != nil {
		return err
	}
	per := float64(rss1-rss0) / float64(len(conns))
	h.figures = fmt.Sprintf("%d held; ruok median %v before, %v while held; RSS %.1f → %.1f MiB, %.2f KB per connection",
		len(conns), ruok0, ruok, mib(rss0), mib(rss1), per/1000)
	if ruok > 50*time.Millisecond {
		h.fail("ruok took %v with the stalled connections held", ruok)
	}
	if per > 3000 {
		h.fail("%.0f bytes of RSS per stalled connection", per)
	}
	return nil
}

// ruokLatency is the median of n ruok round trips.
func ruokLatency(addr string, n int) time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		if out, err := zktest.FourLetter(addr, "ruok", 5*time.Second); err != nil || out != "imok" {
			return 5 * time.Second
		}
		ds = append(ds, time.Since(t))
	}
	slices.Sort(ds)
	return ds[len(ds)/2].Round(10 * time.Microsecond)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// handshakeStep starts 10,000 handshakes at the same moment.
func handshakeStep(ctx context.Context, g *gate, h *hostileResult) error {
	const n = 10000
	start := make(chan struct{})
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			<-start
			t := time.Now()
			c, _, err := rawSession(g.listen)
			if err == nil {
				c.Close()
			}
			lat[i], errs[i] = time.Since(t), err
		})
	}
	peak := watchRSS(g)
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	rssPeak := peak()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	slices.Sort(lat)
	h.figures = fmt.Sprintf("%d of %d sessions created in %v; handshake p50 %v, p99 %v; zkgate RSS peak %.1f MiB",
		n-failed, n, took.Round(10*time.Millisecond), lat[n/2].Round(time.Millisecond), lat[n*99/100].Round(time.Millisecond), mib(rssPeak))
	if failed > 0 {
		h.fail("%d handshakes failed (first: %v)", failed, first)
	}
	return nil
}

// watchRSS samples zkgate's RSS every 20 ms until the returned func is called, which gives
// the peak.
func watchRSS(g *gate) func() int64 {
	var peak int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := g.rss(); err == nil {
				peak = max(peak, r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); <-done; return peak }
}

// rawSession opens a session with a bare ConnectRequest.
func rawSession(addr string) (net.Conn, *jute.FrameReader, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 4000, Passwd: make([]byte, 16)})); err != nil {
		c.Close()
		return nil, nil, err
	}
	fr := jute.NewFrameReaderSize(c, 0, 4<<10)
	frame, err := fr.Next()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(frame[4:], &resp); err != nil || resp.SessionID == 0 {
		c.Close()
		return nil, nil, fmt.Errorf("handshake: %+v %v", resp, err)
	}
	c.SetDeadline(time.Time{})
	return c, fr, nil
}

// request is one framed request.
func request(xid int32, op jute.OpCode, body jute.Record) []byte {
	return jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: op}, body)
}

// bigFrameStep: 100 sessions send a 1 MB request each at the same moment. It is a getData
// of a path that long (answered NONODE): a write that size would reach the followers as a
// proposal over jute.maxbuffer, which they refuse, dropping out of the quorum.
func bigFrameStep(ctx context.Context, g *gate, h *hostileResult) error {
	const n = 100
	const size = 1_048_000
	type sess struct {
		c  net.Conn
		fr *jute.FrameReader
	}
	var ss []sess
	defer func() {
		for _, s := range ss {
			s.c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, fr, err := rawSession(g.listen)
		if err != nil {
			return err
		}
		ss = append(ss, sess{c, fr})
	}
	rss0, err := g.rss()
	if err != nil {
		return err
	}
	frame := request(1, jute.OpGetData, &jute.GetDataRequest{Path: "/hostile/" + strings.Repeat("x", size)})
	peak := watchRSS(g)
	start := make(chan struct{})
	errs := make(chan error, n)
	for _, s := range ss {
		go func() {
			<-start
			s.c.SetDeadline(time.Now().Add(60 * time.Second))
			_, err := s.c.Write(frame)
			if err == nil {
				var reply []byte
				if reply, err = s.fr.Next(); err == nil {
					var hdr jute.ReplyHeader
					if hdr, err = jute.ParseReplyHeader(reply[4:]); err == nil && hdr.Err != jute.ErrNoNode {
						err = fmt.Errorf("getData answered %v, want NONODE", hdr.Err)
					}
				}
			}
			errs <- err
		}()
	}
	began := time.Now()
	close(start)
	failed := 0
	for range ss {
		if err := <-errs; err != nil {
			failed++
			h.fail("big frame: %v", err)
		}
	}
	took := time.Since(began)
	rssPeak := peak()
	bound := int64(n) * int64(len(frame))
	h.figures = fmt.Sprintf("%d of %d answered in %v; zkgate RSS %.1f MiB before, peak %.1f MiB (+%.1f MiB; the frames total %.1f MiB)",
		n-failed, n, took.Round(10*time.Millisecond), mib(rss0), mib(rssPeak), mib(rssPeak-rss0), mib(bound))
	// Each session holds at most its frame in zkgate (read, then written on): the growth
	// stays within the frames' total plus 64 MiB of runtime slack.
	if rssPeak-rss0 > bound+64<<20 {
		h.fail("RSS grew %.1f MiB for %.1f MiB of frames", mib(rssPeak-rss0), mib(bound))
	}
	return nil
}

// badFrameStep sends each kind of bad input on its own fresh session; every one must be
// closed by zkgate.
func badFrameStep(ctx context.Context, g *gate, h *hostileResult) error {
	kinds := []struct {
		name string
		send func(net.Conn) error
	}{
		{"garbage", func(c net.Conn) error {
			_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: zkgate\r\n\r\n\x00\xff\xfe garbage"))
			return err
		}},
		{"oversized length", func(c net.Conn) error { _, err := c.Write(jute.AppendInt(nil, 0x7fffffff)); return err }},
		{"negative length", func(c net.Conn) error { _, err := c.Write(jute.AppendInt(nil, -5)); return err }},
		{"truncated frame", func(c net.Conn) error {
			frame := request(1, jute.OpGetData, &jute.GetDataRequest{Path: "/hostile"})
			if _, err := c.Write(frame[:len(frame)-3]); err != nil {
				return err
			}
			return c.(*net.TCPConn).CloseWrite()
		}},
		{"short header", func(c net.Conn) error { _, err := c.Write([]byte{0, 0, 0, 2, 0, 1}); return err }},
		{"unknown opcode", func(c net.Conn) error {
			_, err := c.Write(request(1, jute.OpCode(999), &jute.GetDataRequest{Path: "/hostile"}))
			return err
		}},
	}
	decode0, _ := g.metric("zkgate_decode_errors_total")
	var closed []string
	for _, k := range kinds {
		c, _, err := rawSession(g.listen)
		if err != nil {
			return err
		}
		err = k.send(c)
		if err == nil {
			err = closedByPeer(c, 30*time.Second)
		}
		c.Close()
		if err != nil {
			h.fail("%s: %v", k.name, err)
			continue
		}
		closed = append(closed, k.name)
	}
	decode1, _ := g.metric("zkgate_decode_errors_total")
	h.figures = fmt.Sprintf("%d of %d connections closed by zkgate (%s); zkgate_decode_errors_total +%.0f",
		len(closed), len(kinds), strings.Join(closed, ", "), decode1-decode0)
	return nil
}

// closedByPeer reads until the peer closes (EOF or reset), discarding any replies.
func closedByPeer(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return fmt.Errorf("still open after %v", d)
			}
			return nil
		}
	}
}

// nonReaderStep: one session writes getData requests of a 512 KiB znode for 10 s and reads
// nothing. zkgate must hold it back, not buffer the replies without bound.
func nonReaderStep(ctx context.Context, g *gate, h *hostileResult) error {
	c, _, err := rawSession(g.listen)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	rss0, err := g.rss()
	if err != nil {
		return err
	}
	peak := watchRSS(g)
	end := time.Now().Add(10 * time.Second)
	sent, blocked := 0, 0
	closed := ""
	began := time.Now()
	var pending []byte
	for xid := int32(1); time.Now().Before(end) && closed == ""; {
		if len(pending) == 0 {
			pending = request(xid, jute.OpGetData, &jute.GetDataRequest{Path: "/hostile/big"})
			xid++
			sent++
		}
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(pending)
		pending = pending[n:]
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			blocked++
		} else if err != nil {
			// Past 1.5 session timeouts without a byte read from it, zkgate closes the
			// client, as ZooKeeper lets such a session expire.
			closed = fmt.Sprintf("; closed by zkgate after %v", time.Since(began).Round(100*time.Millisecond))
		}
	}
	rssPeak := peak()
	h.figures = fmt.Sprintf("%d requests written before the client's writes blocked (%.0f MiB of replies asked for); zkgate RSS %.1f → peak %.1f MiB%s",
		sent, float64(sent)*0.5, mib(rss0), mib(rssPeak), closed)
	if blocked == 0 {
		h.fail("zkgate never stopped reading the non-reader")
	}
	if rssPeak-rss0 > 64<<20 {
		h.fail("RSS grew %.1f MiB for one non-reading session", mib(rssPeak-rss0))
	}
	return nil
}
