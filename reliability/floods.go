//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// The flood steps: many connections, handshakes or large frames at once, and the raw
// protocol helpers they share with the bad-input steps.

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
