//go:build linux

// Command reliability runs zkgate's reliability suite: a real ZooKeeper ensemble with zkgate
// in front, a workload whose history is checked for linearizability, and one fault per
// scenario (members killed, paused, slowed, quorum lost, a rolling restart, a zkgate killed).
// Then the healthy-but-heavy scenarios (heavy.go), each run straight at the members and
// through zkgate, which must trip nothing. Then hostile input and floods, each checked to
// cost only its own connections. It prints a table and, with -out, writes it into
// RELIABILITY.md.
//
//	go run ./reliability                      # every scenario, then the floods
//	go run ./reliability -short               # kill-leader and the two cheapest heavy scenarios, for CI
//	go run ./reliability -scenarios heavy -hostile=false   # the heavy scenarios only
//	go run ./reliability -direct -hostile=false   # the workload straight at the members
//	go run ./reliability -scenarios faults -hostile=false -zkgate-bin /tmp/zkgate-before.bin   # another build
//	go run ./reliability -scenarios faults -hostile=false -zkgate-args "--unsafe-in-flight connection_loss"
//
// Run it from the repository root: it builds zkgate from ./cmd/zkgate, unless -zkgate-bin
// names a binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	names := flag.String("scenarios", "all", "scenarios to run: all, faults (the fault scenarios), heavy (the healthy-but-heavy ones), none, or a comma-separated list of names")
	short := flag.Bool("short", false, "one fault scenario (kill-leader) with fewer sessions and the two cheapest heavy scenarios, for CI; no floods")
	direct := flag.Bool("direct", false, "clients connect straight to the members (the baseline: must report ok)")
	hostile := flag.Bool("hostile", true, "run the hostile-input and flood steps after the scenarios")
	out := flag.String("out", "", "write the results into this markdown file (RELIABILITY.md)")
	keep := flag.Bool("keep", false, "keep the working directory (logs, linearizability.html)")
	bin := flag.String("zkgate-bin", "", "run this zkgate binary instead of building ./cmd/zkgate (a before/after comparison)")
	args := flag.String("zkgate-args", "", "arguments appended to every zkgate's own, split at spaces (\"--unsafe-in-flight connection_loss\")")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := suite(ctx, options{names: *names, short: *short, direct: *direct, hostile: *hostile && !*short && !*direct,
		out: *out, keep: *keep, bin: *bin, args: strings.Fields(*args)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(2)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "reliability: FAILED")
		os.Exit(1)
	}
	fmt.Println("reliability: ok")
}

type options struct {
	names                  string
	short, direct, hostile bool
	out                    string
	keep                   bool
	bin                    string   // a prebuilt zkgate; empty: build ./cmd/zkgate
	args                   []string // appended to every zkgate's arguments
}

func suite(ctx context.Context, o options) (bool, error) {
	dir, err := os.MkdirTemp("", "zkgate-reliability-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "reliability: working directory", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	var list []scenario
	var heavy []heavyScenario
	switch {
	case o.short:
		s, _ := pickScenarios("kill-leader", o.direct)
		list = s
		list[0].idle, list[0].length = 50, 20*time.Second
		if !o.direct {
			heavy = pickHeavy("cheap")
		}
	case o.names != "none":
		if list, heavy, err = pickAll(o.names, o.direct); err != nil {
			return false, err
		}
	}
	bin := zkgateBin{path: o.bin, args: o.args}
	if bin.path == "" && (!o.direct || o.hostile) {
		if bin.path, err = buildZkgate(dir); err != nil {
			return false, err
		}
	}
	rep := report{command: command(o), began: time.Now(), direct: o.direct, bin: o.bin, args: o.args}
	for _, sc := range list {
		sdir := filepath.Join(dir, sc.name)
		if err := mkdir(sdir); err != nil {
			return false, err
		}
		r := &run{sc: sc, dir: sdir, bin: bin, direct: o.direct, log: logf}
		res, err := r.execute(ctx)
		if err != nil {
			return false, err
		}
		if res.linearFile != "" && !o.keep {
			// Keep the visualization of a violation where the report can point at it.
			kept := filepath.Join(os.TempDir(), "zkgate-"+sc.name+"-linearizability.html")
			if os.Rename(res.linearFile, kept) == nil {
				res.linearFile = kept
			}
		}
		rep.results = append(rep.results, res)
		fmt.Println(res.line())
	}
	for _, sc := range heavy {
		res, err := runHeavy(ctx, sc, filepath.Join(dir, sc.name), bin, logf)
		if err != nil {
			return false, err
		}
		rep.heavy = append(rep.heavy, res)
		fmt.Println(res.line())
	}
	if o.hostile {
		h, err := hostileSuite(ctx, dir, bin, logf)
		if err != nil {
			return false, err
		}
		rep.hostile = h
	}
	rep.took = time.Since(rep.began)
	fmt.Println()
	fmt.Print(rep.markdown())
	if o.out != "" {
		if err := rep.write(o.out); err != nil {
			return false, err
		}
		fmt.Fprintln(os.Stderr, "reliability: wrote", o.out)
	}
	return rep.ok(), nil
}

// command is how to rerun what ran, for the report.
func command(o options) string {
	args := []string{"go", "run", "./reliability"}
	if o.short {
		args = append(args, "-short")
	}
	if o.direct {
		args = append(args, "-direct")
	}
	if o.names != "all" && !o.short {
		args = append(args, "-scenarios", o.names)
	}
	if !o.hostile && !o.short && !o.direct {
		args = append(args, "-hostile=false")
	}
	if o.bin != "" {
		args = append(args, "-zkgate-bin", o.bin)
	}
	if len(o.args) > 0 {
		args = append(args, "-zkgate-args", `"`+strings.Join(o.args, " ")+`"`)
	}
	if o.out != "" {
		args = append(args, "-out", o.out)
	}
	return strings.Join(args, " ")
}

// pickAll splits a -scenarios list between the fault scenarios and the heavy ones. "all"
// is both; in -direct mode it leaves the heavy ones out, which run both sides themselves.
func pickAll(names string, direct bool) ([]scenario, []heavyScenario, error) {
	var faults, heavy []string
	for _, n := range strings.Split(names, ",") {
		switch {
		case n == "all":
			faults = append(faults, "all")
			if !direct {
				heavy = append(heavy, "heavy")
			}
		case n == "faults":
			faults = append(faults, "all")
		case n == "heavy" || slices.Contains(heavyNames(), n):
			if direct {
				return nil, nil, errHeavyDirect
			}
			heavy = append(heavy, n)
		default:
			faults = append(faults, n)
		}
	}
	var list []scenario
	if len(faults) > 0 {
		var err error
		if list, err = pickScenarios(strings.Join(faults, ","), direct); err != nil {
			return nil, nil, fmt.Errorf("%w (heavy: %s)", err, strings.Join(heavyNames(), ", "))
		}
	}
	return list, pickHeavy(strings.Join(heavy, ",")), nil
}
