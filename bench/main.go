//go:build linux

// Command bench compares zkgate with direct access to the members and with HAProxy in
// TCP mode, on a real 3-member ensemble it starts itself.
//
//	go run ./bench                       # the default scenarios, a markdown table on stdout
//	go run ./bench -rounds 5 -duration 10s -out BENCHMARKS.md
//	go run ./bench -idle 9900            # RSS per idle session through zkgate
//	go run ./bench -targets direct,zkgate,haproxy,floor -profile /tmp/prof
//	go run ./bench -scenarios active=9900x1@1 -duration 20s -rounds 1   # 9,900 sessions, 1 request/s each
//
// Each scenario runs against the targets interleaved (direct, zkgate, haproxy, direct,
// ...) for -rounds rounds and reports medians. A scenario is name=SESSIONSxCONCURRENCY,
// a closed loop: every session keeps CONCURRENCY requests in flight, pipelined in raw
// jute, so the client is not the bottleneck (-gozk drives go-zookeeper instead, as a
// second opinion). name=SESSIONSxCONCURRENCY@RATE is paced: every session sends RATE
// requests per second (a decimal, so @0.5 is one every 2 s) on a fixed schedule that
// starts at a random phase, with at most CONCURRENCY in flight; a session whose replies
// come late sends late, and the report's achieved rate per session (requests answered
// without an error, by the average session and by the slowest) shows a run that could
// not keep up. Latency is from the send.
//
// Every run opens its sessions first (64 handshakes at a time) and closes them after;
// the figures, CPU per op and RSS included, cover the load in between alone. CPU and RSS
// of zkgate and HAProxy come from /proc. Each proxied session takes two descriptors in
// the proxy, so a hard limit of 20,000 open files (raiseFileLimit cannot lift it without
// CAP_SYS_RESOURCE) caps a proxy at about 9,900 sessions (HAProxy's maxconn follows it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

var zkgateProcs, zkgateFlags, profileDir string

// adminAlways: start zkgate with an admin listener even without -profile.
var adminAlways bool

// haproxyCheck gives HAProxy health checks like zkgate's: srvr to every member every
// 500 ms (-haproxy-check).
var haproxyCheck bool

type scenario struct {
	name        string
	sessions    int
	concurrency int
	rate        float64 // requests per second per session; 0 is the closed loop
}

// label is the scenario as the report names it: "many (64x4)", "active (9900x1@1)".
func (sc scenario) label() string {
	if sc.rate > 0 {
		return fmt.Sprintf("%s (%dx%d@%g)", sc.name, sc.sessions, sc.concurrency, sc.rate)
	}
	return fmt.Sprintf("%s (%dx%d)", sc.name, sc.sessions, sc.concurrency)
}

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds per scenario; medians are reported")
	duration := flag.Duration("duration", 5*time.Second, "length of one run's load, after its sessions open")
	mixFlag := flag.String("mix", "get=70,set=20,create=5,delete=5", "operation mix, percent")
	valueSize := flag.Int("value", 128, "value size in bytes for setData and create")
	targetsFlag := flag.String("targets", "direct,zkgate,haproxy", "targets to compare")
	scenariosFlag := flag.String("scenarios", "latency=1x1,pipelined=8x32,many=64x4",
		"name=SESSIONSxCONCURRENCY (closed loop) or name=SESSIONSxCONCURRENCY@RATE (paced: RATE requests/s per session, at most CONCURRENCY in flight), comma-separated")
	gozk := flag.Bool("gozk", false, "drive go-zookeeper instead of raw pipelined jute (closed-loop scenarios only)")
	idle := flag.Int("idle", 0, "instead of the load: open this many idle sessions through zkgate and report RSS per session (at most about 9,990 under a 20,000-descriptor limit)")
	idleFor := flag.Duration("idle-for", 30*time.Second, "idle time before the second RSS reading, and again before the third")
	out := flag.String("out", "", "also write the report to this markdown file")
	flag.StringVar(&zkgateProcs, "zkgate-gomaxprocs", "", "GOMAXPROCS for the zkgate process (default: Go's)")
	flag.StringVar(&zkgateFlags, "zkgate-flags", "", "more flags for zkgate serve, e.g. \"--coalesce 0\"")
	flag.BoolVar(&haproxyCheck, "haproxy-check", false, "HAProxy checks every member with srvr every 500 ms, as zkgate's health does (default: no checks)")
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
	paced := slices.ContainsFunc(scenarios, func(sc scenario) bool { return sc.rate > 0 })
	if gozk && paced {
		return errors.New("paced scenarios (@RATE) take the raw driver: drop -gozk")
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

	adminAlways = idle > 0 // the idle report reads zkgate's live heap from its /debug/pprof
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
	loop := "closed loop (SxC: S sessions, C requests in flight each)"
	if paced {
		loop += "; SxC@R paced (R requests/s per session from a random phase, at most C in flight)"
	}
	fmt.Fprintf(&report, "Load: %s, mix %s, %d-byte values, %v per run after the sessions open (CPU, RSS and rates over that alone), %d interleaved rounds, medians. Driver: %s.\n\n",
		loop, mixFlag, valueSize, duration, rounds, map[bool]string{false: "raw pipelined jute", true: "go-zookeeper"}[gozk])
	fmt.Fprintln(&report, "| scenario | target | ops/s | per session ok ops/s (slowest) | vs direct | p50 | p99 | p999 | proxy CPU µs/op | proxy RSS MiB | errors |")
	fmt.Fprintln(&report, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
				load := Load{Addrs: t.addrs, Sessions: sc.sessions, Concurrency: sc.concurrency, Rate: sc.rate, Duration: duration,
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
				mean, slowest := m.res.PerSession()
				fmt.Fprintf(os.Stderr, "bench: %s %s round %d: %d sessions opened in %v; %.0f ops/s (ok: %.3f/s per session, slowest %.3f) p50 %v p99 %v cpu %.1f µs/op (user %.1f, sys %.1f) rss %.1f MiB errors %d, sessions lost %d; load generator %.1f µs/op\n",
					sc.name, name, r+1, sc.sessions, m.res.Opening.Round(time.Millisecond), m.res.OpsPerSec(), mean, slowest,
					m.res.Pct(50), m.res.Pct(99), m.cpuPerOp, m.userPerOp, m.sysPerOp, m.rssMiB, m.res.Errors, m.res.Lost, m.clientPerOp)
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
			errs, lost := 0, 0
			for _, m := range ms {
				errs += m.res.Errors
				lost += m.res.Lost
			}
			errCell := strconv.Itoa(errs)
			if lost > 0 {
				errCell += fmt.Sprintf(" (%d sessions lost)", lost)
			}
			vs := "–"
			if direct > 0 {
				vs = fmt.Sprintf("%.2f×", ops/direct)
			}
			perSession := fmt.Sprintf("%.2f (%.2f)",
				median(ms, func(m measure) float64 { mean, _ := m.res.PerSession(); return mean }),
				median(ms, func(m measure) float64 { _, slowest := m.res.PerSession(); return slowest }))
			fmt.Fprintf(&report, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				sc.label(), name, ops, perSession, vs, lat(50), lat(99), lat(99.9), cpu, rss, errCell)
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
				fmt.Fprintf(&paired, "| %s | %s | %s | %s | %s |%s\n", sc.label(), name, added(50), added(99), ratio, floorRatio)
				user := median(ms, func(m measure) float64 { return m.userPerOp })
				sys := median(ms, func(m measure) float64 { return m.sysPerOp })
				share := median(ms, func(m measure) float64 { return m.sysPerOp / max(m.cpuPerOp, 1e-9) })
				fmt.Fprintf(&split, "| %s | %s | %s | %.1f | %.1f | %.0f %% |\n", sc.label(), name, cpu, user, sys, 100*share)
				if off := runs["zkgate-nohot"]; name == "zkgate" && len(off) == len(ms) {
					fmt.Fprintf(&hot, "| %s | %.2f× |\n", sc.label(),
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

// parseScenarios reads "name=SESSIONSxCONCURRENCY[@RATE],...".
func parseScenarios(s string) ([]scenario, error) {
	var out []scenario
	for _, part := range strings.Split(s, ",") {
		name, spec, ok1 := strings.Cut(part, "=")
		spec, rate, paced := strings.Cut(spec, "@")
		sessions, concurrency, ok2 := strings.Cut(spec, "x")
		sc := scenario{name: name}
		var err1, err2, err3 error
		sc.sessions, err1 = strconv.Atoi(sessions)
		sc.concurrency, err2 = strconv.Atoi(concurrency)
		if paced {
			sc.rate, err3 = strconv.ParseFloat(rate, 64)
		}
		if !ok1 || !ok2 || name == "" || errors.Join(err1, err2, err3) != nil || sc.sessions < 1 || sc.concurrency < 1 ||
			paced && !(sc.rate > 0 && !math.IsInf(sc.rate, 0)) {
			return nil, fmt.Errorf("scenario %q: want name=SESSIONSxCONCURRENCY or name=SESSIONSxCONCURRENCY@RATE (RATE > 0 requests/s per session)", part)
		}
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
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}
