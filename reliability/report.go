//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// report is a whole run: every scenario's result and the hostile steps.
type report struct {
	command string
	began   time.Time
	took    time.Duration
	direct  bool
	bin     string   // -zkgate-bin, when not built from the tree
	args    []string // -zkgate-args
	results []*result
	heavy   []*heavyResult
	hostile []hostileResult
}

func (rep *report) ok() bool {
	for _, r := range rep.results {
		if !r.ok() {
			return false
		}
	}
	for _, h := range rep.heavy {
		if !h.ok() {
			return false
		}
	}
	for _, h := range rep.hostile {
		if len(h.problems) > 0 {
			return false
		}
	}
	return true
}

func verdict(problems []string) string {
	if len(problems) == 0 {
		return "ok"
	}
	return "FAIL: " + strings.Join(problems, "; ")
}

// line is one scenario's summary for the terminal.
func (res *result) line() string {
	return fmt.Sprintf("%-16s reacted=%q noticed=%s linearizable=%s ops=%d unknown=%d (%s) creates=%d lost=%d ephemerals=%d lost=%d watches=%d missed=%d dup=%d expired=%d disconnects=%v loss=%v rejects=%v longest=%v moves=%d closed=%d breaker-opened=%d slow-calls=%d ejections=%d: %s",
		res.name, res.detection.reactedCell(), res.detection.noticedCell(), res.linear, res.ops, res.unknownOps, res.resolved, res.acked, res.lostCreates, res.ephemerals, res.lostEphemeral,
		res.watches, res.missed, res.dup, res.expired, res.disconnects, res.failedLoss, res.failedRej,
		res.longest.Round(time.Millisecond), res.moved, res.moveClosed, res.breakerOpened, res.stalled, res.ejections, verdict(res.problems))
}

func byClass(m map[string]int) string {
	return fmt.Sprintf("%d / %d / %d", m[classIdle], m[classRegister], m[classCreate])
}

// markdown renders the report's sections.
func (rep *report) markdown() string {
	var b strings.Builder
	if len(rep.results) > 0 {
		b.WriteString(rep.scenarioTable())
	}
	if len(rep.heavy) > 0 {
		b.WriteString(rep.heavyTable())
	}
	if len(rep.hostile) > 0 {
		b.WriteString(rep.hostileTable())
	}
	return b.String()
}

func (rep *report) header(b *strings.Builder) {
	fmt.Fprintf(b, "`%s` · %s · %s · took %v\n\n", rep.command, rep.began.UTC().Format("2006-01-02 15:04 UTC"),
		machine(), rep.took.Round(time.Second))
}

func (rep *report) scenarioTable() string {
	var b strings.Builder
	settings := "defaults"
	if len(rep.args) > 0 {
		settings = "defaults and `" + strings.Join(rep.args, " ") + "`"
	}
	target := "zkgate in front (" + settings + "; 2 instances for kill-zkgate)"
	if rep.bin != "" {
		target = "zkgate `" + rep.bin + "` in front (" + settings + "; 2 instances for kill-zkgate)"
	}
	if rep.direct {
		target = "clients straight to the members (baseline)"
	}
	fmt.Fprintf(&b, "Target: %s. ", target)
	rep.header(&b)
	fmt.Fprintf(&b, "*zkgate reacted*: from the fault's injection to the first change on a gate's /metrics (polled every %v for up to %v): a session moved or closed (its outcome label), a member ejected, a member down, a breaker transition. *Clients noticed*: to the first disconnect any workload client saw.\n\n", detectEvery, detectFor)
	b.WriteString("| scenario | fault | zkgate reacted | clients noticed | linearizable (ops; unknown: took effect / did not / left to the checker) | acked creates (lost) | ephemerals (lost) | watches (missed, twice) | expired | disconnects idle / register / create | failed: connection loss | failed: reject code | longest unserved | zkgate moves (closed) | breaker opened / slow calls / ejections | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.results {
		moves, gate := "–", "–"
		if !rep.direct {
			moves = fmt.Sprintf("%d (%d)", r.moved, r.moveClosed)
			gate = fmt.Sprintf("%d / %d / %d", r.breakerOpened, r.stalled, r.ejections)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s (%d; %d: %s) | %d (%d) | %d (%d) | %d (%d, %d) | %d | %s | %s | %s | %v | %s | %s | %s |\n",
			r.name, r.desc, r.detection.reactedCell(), r.detection.noticedCell(), r.linear, r.ops, r.unknownOps, r.resolved, r.acked, r.lostCreates, r.ephemerals, r.lostEphemeral,
			r.watches, r.missed, r.dup, r.expired, byClass(r.disconnects), byClass(r.failedLoss), byClass(r.failedRej),
			r.longest.Round(10*time.Millisecond), moves, gate, verdict(r.problems))
	}
	b.WriteString("\n")
	return b.String()
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

// write puts each section of the report between its markers in path, leaving the rest of
// the file (the prose, the other sections) as it is. A missing marker pair is appended.
func (rep *report) write(path string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if len(rep.results) > 0 {
		name := "scenarios"
		if rep.direct {
			name = "direct"
		}
		text = replaceSection(text, name, rep.scenarioTable())
	}
	if len(rep.heavy) > 0 {
		text = replaceSection(text, "heavy", rep.heavyTable())
	}
	if len(rep.hostile) > 0 {
		text = replaceSection(text, "hostile", rep.hostileTable())
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func replaceSection(text, name, body string) string {
	begin, end := "<!-- reliability:"+name+" -->\n", "<!-- /reliability:"+name+" -->\n"
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i < 0 || j < i {
		return text + "\n" + begin + body + end
	}
	return text[:i+len(begin)] + body + text[j:]
}

func (rep *report) hostileTable() string {
	var b strings.Builder
	b.WriteString("Target: one zkgate (defaults, but `--handshake-timeout 60s` so the stalled connections are still held when measured) in front of 3 members; 10 witness sessions read and write through it during every step. ")
	rep.header(&b)
	b.WriteString("| step | what | figures | witness ops (failed, p99) | result |\n|---|---|---|---|---|\n")
	for _, h := range rep.hostile {
		fmt.Fprintf(&b, "| %s | %s | %s | %d (%d, %v) | %s |\n", h.name, h.what, h.figures, h.witness.ops,
			h.witness.failed, h.witness.p99, verdict(h.problems))
	}
	b.WriteString("\n")
	return b.String()
}

func (r resolution) String() string {
	return fmt.Sprintf("%d / %d / %d", r.happened, r.dropped, r.ambiguous)
}
