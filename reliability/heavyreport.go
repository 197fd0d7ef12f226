//go:build linux

package main

import (
	"fmt"
	"strings"
)

// line is one heavy scenario's summary for the terminal.
func (res *heavyResult) line() string {
	return fmt.Sprintf("%-20s ops direct=%d failed=%d zkgate=%d failed=%d beyond-direct=%d ejections=%d breaker-transitions=%d moves=%d refused=%d slow-calls=%d: %s",
		res.name, res.direct.ops, len(res.direct.failed), res.gate.ops, len(res.gate.failed), res.beyond,
		res.gate.ejections, res.gate.transitions, res.gate.moves, res.gate.refused, res.gate.slowCalls, verdict(res.problems))
}

func (rep *report) heavyTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Each scenario runs twice, each time on a fresh 3-member ensemble (members: `-Xmx1g`, `jute.maxbuffer` %d MiB): "+
		"straight at the members, then through one zkgate (defaults, but `limits.max_frame` %d MiB + 1 KiB). "+
		"Failed operations are counted per operation: \"beyond direct\" are those that failed through zkgate and not directly. "+
		"zkgate's figures count from the load's start to 3 s after it. Every load but the steady ones (gc-pause, snapshots, busy-machine) has a second session reading every 10 ms beside it; its reads count. ", heavyMaxBuffer>>20, heavyMaxBuffer>>20)
	rep.header(&b)
	b.WriteString("| scenario | load | operations direct / zkgate | failed direct | failed zkgate (beyond direct) | ejections | breaker transitions | session moves | refused sessions | slow calls (not a trip) | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.heavy {
		fmt.Fprintf(&b, "| %s | %s | %d / %d | %d | %d (%d) | %d | %d | %d | %d | %d | %s |\n",
			r.name, r.desc, r.direct.ops, r.gate.ops, len(r.direct.failed), len(r.gate.failed), r.beyond,
			r.gate.ejections, r.gate.transitions, r.gate.moves, r.gate.refused, r.gate.slowCalls, strings.ReplaceAll(verdict(r.problems), "|", "\\|"))
	}
	b.WriteString("\n")
	return b.String()
}
