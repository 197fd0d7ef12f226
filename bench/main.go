//go:build linux

// Command bench compares zkgate with direct access to the members and with HAProxy in
// TCP mode, on a real 3-member ensemble it starts itself.
//
//	go run ./bench                       # the default scenarios, a markdown table on stdout
//	go run ./bench -rounds 5 -duration 10s -out BENCHMARKS.md
//	go run ./bench -idle 10000           # RSS per idle session through zkgate
//	go run ./bench -targets direct,zkgate,haproxy,floor -profile /tmp/prof
//
// Each scenario runs against the targets interleaved (direct, zkgate, haproxy, direct,
// ...) for -rounds rounds and reports medians. The load is closed-loop: N sessions each
// keep C requests in flight, pipelined in raw jute, so the client is not the bottleneck
// (-gozk drives go-zookeeper instead, as a second opinion). CPU and RSS of zkgate and
// HAProxy come from /proc.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

var zkgateProcs, zkgateFlags, profileDir string

type scenario struct {
	name        string
	sessions    int
	concurrency int
}

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds per scenario; medians are reported")
	duration := flag.Duration("duration", 5*time.Second, "length of one run")
	mixFlag := flag.String("mix", "get=70,set=20,create=5,delete=5", "operation mix, percent")
	valueSize := flag.Int("value", 128, "value size in bytes for setData and create")
	targetsFlag := flag.String("targets", "direct,zkgate,haproxy", "targets to compare")
	scenariosFlag := flag.String("scenarios", "latency=1x1,pipelined=8x32,many=64x4", "name=SESSIONSxCONCURRENCY,...")
	gozk := flag.Bool("gozk", false, "drive go-zookeeper instead of raw pipelined jute")
	idle := flag.Int("idle", 0, "instead of the load: open this many idle sessions through zkgate and report RSS per session")
	idleFor := flag.Duration("idle-for", 30*time.Second, "idle time before the second RSS reading, and again before the third")
	out := flag.String("out", "", "also write the report to this markdown file")
	flag.StringVar(&zkgateProcs, "zkgate-gomaxprocs", "", "GOMAXPROCS for the zkgate process (default: Go's)")
	flag.StringVar(&zkgateFlags, "zkgate-flags", "", "more flags for zkgate serve, e.g. \"--coalesce 0\"")
	flag.StringVar(&profileDir, "profile", "", "run zkgate with --pprof and write its CPU profile of each scenario's last round to DIR/zkgate-TARGET-SCENARIO.pprof")
	flag.Parse()

	if err := run(*rounds, *duration, *mixFlag, *valueSize, *targetsFlag, *scenariosFlag, *gozk, *idle, *idleFor, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(rounds int, duration time.Duration, mixFlag string, valueSize int, targetsFlag, scenariosFlag string,
	gozk bool, idle int, idleFor time.Duration, out string) error {
	mix, err := ParseMix(mixFlag)
	if err != nil {
		return err
	}
	scenarios, err := parseScenarios(scenariosFlag)
	if err != nil {
		return err
	}
	raiseFileLimit()
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Fprintln(os.Stderr, "bench: starting a 3-member ensemble")
	ens, err := zktest.New(zktest.Config{Members: 3, TickTime: 2 * time.Second, Extra: map[string]string{
		"globalOutstandingLimit": "100000", // the default 1000 throttles pipelined load
	}})
	if err != nil {
		return err
	}
	defer ens.Close()
	dir, err := os.MkdirTemp("", "zkgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	gate, err := startZkgate(dir, ens.Addrs(), "zkgate")
	if err != nil {
		return err
	}
	defer gate.stop()

	if idle > 0 {
		return idleReport(ctx, gate, idle, idleFor, out)
	}

	targets := map[string]*target{
		"direct": {name: "direct", addrs: ens.Addrs()},
		"zkgate": gate,
	}
	var order []string
	var shared *benchCert
	for _, t := range strings.Split(targetsFlag, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "haproxy" || t == "haproxy-tls" || t == "zkgate-tls":
			var cert *benchCert
			if t != "haproxy" {
				if shared == nil { // one certificate for every TLS target
					if shared, err = newBenchCert(dir); err != nil {
						return err
					}
				}
				cert = shared
			}
			var tg *target
			if t == "zkgate-tls" {
				tg, err = startZkgateTLS(dir, ens.Addrs(), cert)
			} else {
				tg, err = startHAProxy(dir, ens.Addrs(), cert)
			}
			if err != nil {
				return err
			}
			defer tg.stop()
			targets[t] = tg
		case t == "floor":
			// the cheapest relay of the same traffic (bench/floor)
			f, err := startFloor(dir, ens.Addrs())
			if err != nil {
				return err
			}
			defer f.stop()
			targets[t] = f
		case t == "zkgate-nohot":
			// zkgate with hot spots off: what they cost (zkgate ÷ zkgate-nohot)
			g, err := startZkgate(dir, ens.Addrs(), t, "--hotspots=false")
			if err != nil {
				return err
			}
			defer g.stop()
			targets[t] = g
		case targets[t] == nil:
			return fmt.Errorf("unknown target %q (direct, zkgate, zkgate-nohot, zkgate-tls, haproxy, haproxy-tls, floor)", t)
		}
		order = append(order, t)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "Machine: %d CPUs, %s; ZooKeeper 3.8 (3 members, loopback); %s\n\n", runtime.NumCPU(), runtime.Version(), cpuModel())
	fmt.Fprintf(&report, "Load: %s, mix %s, %d-byte values, %v per run, %d interleaved rounds, medians. Driver: %s.\n\n",
		"closed loop", mixFlag, valueSize, duration, rounds, map[bool]string{false: "raw pipelined jute", true: "go-zookeeper"}[gozk])
	fmt.Fprintln(&report, "| scenario | target | ops/s | vs direct | p50 | p99 | p999 | proxy CPU µs/op | proxy RSS MiB | errors |")
	fmt.Fprintln(&report, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	// Paired figures: each round's proxy run against the same round's direct (and HAProxy)
	// run, minutes apart, then the median over rounds; the ensemble's drift between rounds
	// cancels out of them.
	var paired, hot, split strings.Builder
	var profiles []string
	fmt.Fprintln(&split, "| scenario | target | CPU µs/op | user µs/op | system µs/op | system share |")
	fmt.Fprintln(&split, "|---|---|---:|---:|---:|---:|")
	_, withFloor := targets["floor"]
	floorCol := ""
	if withFloor {
		floorCol = " CPU per op ÷ the floor's |"
	}
	fmt.Fprintln(&hot, "| scenario | zkgate CPU per op ÷ zkgate's with hot spots off |")
	fmt.Fprintln(&hot, "|---|---:|")
	fmt.Fprintf(&paired, "| scenario | target | added p50 | added p99 | CPU per op ÷ HAProxy's (TLS: ÷ HAProxy's with TLS) |%s\n", floorCol)
	fmt.Fprintf(&paired, "|---|---|---:|---:|---:|%s\n", map[bool]string{true: "---:|"}[withFloor])
	for i, sc := range scenarios {
		runs := map[string][]measure{}
		for r := range rounds {
			for _, name := range order {
				t := targets[name]
				load := Load{Addrs: t.addrs, Sessions: sc.sessions, Concurrency: sc.concurrency, Duration: duration,
					Mix: mix, ValueSize: valueSize, Root: fmt.Sprintf("/bench-%d-%s-%d", i, name, r), GoZK: gozk, TLS: t.tls}
				if err := load.Prepare(ens.Addrs()[0]); err != nil {
					return err
				}
				prof := ""
				if profileDir != "" && t.admin != "" && r == rounds-1 {
					prof = filepath.Join(profileDir, fmt.Sprintf("zkgate-%s-%s.pprof", name, sc.name))
					profiles = append(profiles, prof)
				}
				m, err := t.measure(ctx, load, prof)
				if err != nil {
					return fmt.Errorf("%s, %s, round %d: %w", sc.name, name, r+1, err)
				}
				fmt.Fprintf(os.Stderr, "bench: %s %s round %d: %.0f ops/s p50 %v p99 %v cpu %.1f µs/op\n",
					sc.name, name, r+1, m.res.OpsPerSec(), m.res.Pct(50), m.res.Pct(99), m.cpuPerOp)
				runs[name] = append(runs[name], m)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		direct := median(runs["direct"], func(m measure) float64 { return m.res.OpsPerSec() })
		for _, name := range order {
			ms := runs[name]
			ops := median(ms, func(m measure) float64 { return m.res.OpsPerSec() })
			lat := func(p float64) string {
				return fmtDur(time.Duration(median(ms, func(m measure) float64 { return float64(m.res.Pct(p)) })))
			}
			cpu, rss := "–", "–"
			if name != "direct" {
				cpu = fmt.Sprintf("%.1f", median(ms, func(m measure) float64 { return m.cpuPerOp }))
				rss = fmt.Sprintf("%.1f", median(ms, func(m measure) float64 { return m.rssMiB }))
			}
			errs := 0
			for _, m := range ms {
				errs += m.res.Errors
			}
			vs := "–"
			if direct > 0 {
				vs = fmt.Sprintf("%.2f×", ops/direct)
			}
			fmt.Fprintf(&report, "| %s (%dx%d) | %s | %.0f | %s | %s | %s | %s | %s | %s | %d |\n",
				sc.name, sc.sessions, sc.concurrency, name, ops, vs, lat(50), lat(99), lat(99.9), cpu, rss, errs)
			if name != "direct" && len(runs["direct"]) == len(ms) {
				added := func(p float64) string {
					return fmtDur(time.Duration(pairedMedian(ms, runs["direct"], func(a, b measure) float64 {
						return float64(a.res.Pct(p) - b.res.Pct(p))
					})))
				}
				ratio := "–"
				ref := "haproxy"
				if strings.HasSuffix(name, "-tls") {
					ref = "haproxy-tls" // TLS against TLS
				}
				if hp := runs[ref]; name != ref && !strings.HasPrefix(name, "haproxy") && len(hp) == len(ms) {
					ratio = fmt.Sprintf("%.2f×", pairedMedian(ms, hp, func(a, b measure) float64 { return a.cpuPerOp / b.cpuPerOp }))
				}
				floorRatio := ""
				if fl := runs["floor"]; withFloor {
					floorRatio = " – |"
					if name != "floor" && len(fl) == len(ms) {
						floorRatio = fmt.Sprintf(" %.2f× |", pairedMedian(ms, fl, func(a, b measure) float64 { return a.cpuPerOp / b.cpuPerOp }))
					}
				}
				fmt.Fprintf(&paired, "| %s (%dx%d) | %s | %s | %s | %s |%s\n", sc.name, sc.sessions, sc.concurrency, name, added(50), added(99), ratio, floorRatio)
				user := median(ms, func(m measure) float64 { return m.userPerOp })
				sys := median(ms, func(m measure) float64 { return m.sysPerOp })
				share := median(ms, func(m measure) float64 { return m.sysPerOp / max(m.cpuPerOp, 1e-9) })
				fmt.Fprintf(&split, "| %s (%dx%d) | %s | %s | %.1f | %.1f | %.0f %% |\n", sc.name, sc.sessions, sc.concurrency, name, cpu, user, sys, 100*share)
				if off := runs["zkgate-nohot"]; name == "zkgate" && len(off) == len(ms) {
					fmt.Fprintf(&hot, "| %s (%dx%d) | %.2f× |\n", sc.name, sc.sessions, sc.concurrency,
						pairedMedian(ms, off, func(a, b measure) float64 { return a.cpuPerOp / b.cpuPerOp }))
				}
			}
		}
	}
	fmt.Fprintf(&report, "\nPaired by round (median over rounds of each round's difference or ratio):\n\n%s", paired.String())
	if strings.Contains(targetsFlag, "zkgate-nohot") {
		fmt.Fprintf(&report, "\nThe cost of hot spots, paired by round:\n\n%s", hot.String())
	}
	fmt.Fprintf(&report, "\nUser and system CPU per op (utime and stime from /proc/<pid>/stat, in 10 ms ticks; medians over rounds, each column on its own):\n\n%s", split.String())
	for _, p := range profiles {
		fmt.Fprintf(&report, "\n`go tool pprof -top %s` (the last round, %v less %v at each end):\n\n```\n%s```\n",
			filepath.Base(p), duration, profileMargin, profileTop(p, 25))
	}
	extra := ""
	if zkgateFlags != "" {
		extra = fmt.Sprintf(" -zkgate-flags %q", zkgateFlags)
	}
	if profileDir != "" {
		extra += " -profile " + profileDir
	}
	fmt.Fprintf(&report, "\nCommand: `go run ./bench -rounds %d -duration %v -targets %s -scenarios %s -mix %s -value %d%s`\n",
		rounds, duration, targetsFlag, scenariosFlag, mixFlag, valueSize, extra)
	fmt.Print(report.String())
	if out != "" {
		return os.WriteFile(out, []byte(report.String()), 0o644)
	}
	return nil
}

func parseScenarios(s string) ([]scenario, error) {
	var out []scenario
	for _, part := range strings.Split(s, ",") {
		name, spec, ok := strings.Cut(part, "=")
		var sc scenario
		if _, err := fmt.Sscanf(spec, "%dx%d", &sc.sessions, &sc.concurrency); !ok || err != nil || sc.sessions < 1 || sc.concurrency < 1 {
			return nil, fmt.Errorf("scenario %q: want name=SESSIONSxCONCURRENCY", part)
		}
		sc.name = name
		out = append(out, sc)
	}
	return out, nil
}

func median(ms []measure, f func(measure) float64) float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	return middle(v)
}

// middle is the median of v (which it sorts); 0 when v is empty.
func middle(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// pairedMedian is the median over rounds of f(a[r], b[r]).
func pairedMedian(a, b []measure, f func(a, b measure) float64) float64 {
	v := make([]float64, len(a))
	for r := range a {
		v[r] = f(a[r], b[r])
	}
	return middle(v)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
}

// idleReport opens n idle sessions through zkgate and reports its RSS per session, then
// again after they sat idle.
func idleReport(ctx context.Context, gate *target, n int, idleFor time.Duration, out string) error {
	pid := gate.cmd.Process.Pid
	runtime.GC()
	before := readProc(pid)
	opened := make(chan struct{})
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- Idle(ictx, gate.addrs[0], n, func() { close(opened) }) }()
	select {
	case err := <-errc:
		return err
	case <-opened:
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second) // let zkgate settle after the burst of handshakes; the readings below are what count
	first := readProc(pid)
	select {
	case err := <-errc:
		return err
	case <-time.After(idleFor):
	}
	second := readProc(pid)
	select {
	case err := <-errc:
		return err
	case <-time.After(idleFor):
	}
	third := readProc(pid)
	var report strings.Builder
	fmt.Fprintf(&report, "Idle sessions through zkgate: %d opened in %v\n\n", n, took.Round(time.Millisecond))
	fmt.Fprintln(&report, "| reading | zkgate RSS MiB | per session KiB |")
	fmt.Fprintln(&report, "|---|---:|---:|")
	per := func(p procStat) float64 { return float64(p.rss-before.rss) / 1024 / float64(n) }
	fmt.Fprintf(&report, "| before | %.1f | – |\n", float64(before.rss)/(1<<20))
	fmt.Fprintf(&report, "| all open | %.1f | %.1f |\n", float64(first.rss)/(1<<20), per(first))
	fmt.Fprintf(&report, "| after %v idle | %.1f | %.1f |\n", idleFor, float64(second.rss)/(1<<20), per(second))
	fmt.Fprintf(&report, "| after %v idle | %.1f | %.1f |\n", 2*idleFor, float64(third.rss)/(1<<20), per(third))
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
