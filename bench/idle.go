//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// idleReport opens n idle sessions through zkgate and reports its RSS per session, then
// again after they sat idle; per session is over the n opened, and the sessions still
// open (zkgate closes a client silent for 1.5 session timeouts) are beside it.
func idleReport(ctx context.Context, gate *target, n int, idleFor time.Duration, out string) error {
	pid := gate.cmd.Process.Pid
	runtime.GC()
	before, beforeFiles, beforeHeap := readProc(pid), openFiles(pid), readHeap(ctx, gate.admin)
	opened := make(chan struct{})
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	var ended atomic.Int64
	go func() { errc <- Idle(ictx, gate.addrs[0], n, func() { close(opened) }, &ended) }()
	select {
	case err := <-errc:
		return err
	case <-opened:
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second) // let zkgate settle after the burst of handshakes; the readings below are what count
	first, firstOpen, firstFiles, firstHeap := readProc(pid), n-int(ended.Load()), openFiles(pid), readHeap(ctx, gate.admin)
	select {
	case err := <-errc:
		return err
	case <-time.After(idleFor):
	}
	second, secondOpen, secondFiles, secondHeap := readProc(pid), n-int(ended.Load()), openFiles(pid), readHeap(ctx, gate.admin)
	select {
	case err := <-errc:
		return err
	case <-time.After(idleFor):
	}
	third, thirdOpen, thirdFiles, thirdHeap := readProc(pid), n-int(ended.Load()), openFiles(pid), readHeap(ctx, gate.admin)
	var report strings.Builder
	fmt.Fprintf(&report, "Idle sessions through zkgate: %d opened in %v\n\n", n, took.Round(time.Millisecond))
	fmt.Fprintln(&report, "| reading | zkgate RSS MiB | per session KiB | live heap MiB | live heap per session KiB | goroutines | sessions open | zkgate descriptors |")
	fmt.Fprintln(&report, "|---|---:|---:|---:|---:|---:|---:|---:|")
	per := func(p procStat) float64 { return float64(p.rss-before.rss) / 1024 / float64(n) }
	row := func(name string, p procStat, h heapStat, open, files int) {
		fmt.Fprintf(&report, "| %s | %.1f | %.1f | %.1f | %.1f | %d | %d | %d |\n", name, float64(p.rss)/(1<<20), per(p),
			float64(h.live)/(1<<20), float64(h.live-beforeHeap.live)/1024/float64(n), h.goroutines, open, files)
	}
	fmt.Fprintf(&report, "| before | %.1f | – | %.1f | – | %d | 0 | %d |\n", float64(before.rss)/(1<<20),
		float64(beforeHeap.live)/(1<<20), beforeHeap.goroutines, beforeFiles)
	row("all open", first, firstHeap, firstOpen, firstFiles)
	row(fmt.Sprintf("after %v idle", idleFor), second, secondHeap, secondOpen, secondFiles)
	row(fmt.Sprintf("after %v idle", 2*idleFor), third, thirdHeap, thirdOpen, thirdFiles)
	fmt.Fprintf(&report, "\nzkgate CPU while idle: %.1f ms/s. Command: `go run ./bench -idle %d -idle-for %v`\n",
		float64((third.cpu-first.cpu).Milliseconds())/(2*idleFor).Seconds(), n, idleFor)
	fmt.Print(report.String())
	if out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString("\n" + report.String())
		return err
	}
	return nil
}

// Idle opens n raw sessions through addr, openAtOnce handshakes at a time (so that none
// sits silent long enough for zkgate to close it before the pings start), and keeps them
// alive with pings until ctx ends. opened is called once all are established; ended
// counts the sessions whose connection ended since.
func Idle(ctx context.Context, addr string, n int, opened func(), ended *atomic.Int64) error {
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, openAtOnce)
	for w := range openAtOnce {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				c, _, err := handshake(addr, 30*time.Second, nil)
				if err != nil {
					errs[w] = fmt.Errorf("idle session %d of %d: %w", i+1, n, err)
					next.Store(int64(n)) // stop the other workers
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	opened()
	// Ping every 10 s (a third of the 30 s timeout), spread out; discard the replies.
	ping := jute.AppendFrame(nil, &jute.RequestHeader{Xid: jute.XidPing, Type: jute.OpPing})
	for _, c := range conns {
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					if ctx.Err() == nil {
						ended.Add(1)
					}
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

// heapStat is zkgate's live heap, read after a collection it runs for the reading
// (/debug/pprof/heap?gc=1: HeapAlloc then counts only reachable objects), and its
// goroutines. RSS alone cannot tell a growing heap from garbage not yet collected or pages
// the runtime has not returned.
type heapStat struct {
	live       int64
	goroutines int
}

func readHeap(ctx context.Context, admin string) heapStat {
	var h heapStat
	if admin == "" {
		return h
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			h.live, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if req, err = http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/debug/pprof/goroutine?debug=1", nil); err != nil {
		return h
	}
	if resp, err = http.DefaultClient.Do(req); err != nil {
		return h
	}
	defer resp.Body.Close()
	sc = bufio.NewScanner(resp.Body)
	if sc.Scan() {
		// "goroutine profile: total N"
		h.goroutines, _ = strconv.Atoi(strings.TrimPrefix(sc.Text(), "goroutine profile: total "))
	}
	return h
}
