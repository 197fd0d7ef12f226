package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/hotspot"
)

func newTopCmd() *cobra.Command {
	var addr, ensemble string
	var every time.Duration
	var iterations int
	cmd := &cobra.Command{
		Use:   "top",
		Short: "A refreshing terminal view of a running zkgate: what is wrong, and the heaviest clients, paths and sessions",
		Long: "top polls a running zkgate's /api/v1/status and redraws: each ensemble's state, what is wrong and\n" +
			"since when, then the heaviest clients (by IP), path prefixes and sessions by requests per second\n" +
			"over zkgate's hot spot window, with their errors and bytes. It fits an 80x24 terminal and uses\n" +
			"more rows and columns when the terminal has them. Ctrl-C quits.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			for i := 0; iterations == 0 || i < iterations; i++ {
				if i > 0 {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(every):
					}
				}
				w, h := termSize(out)
				st, _, err := fetchStatus(addr, every+time.Second)
				screen := ""
				if err != nil {
					screen = clip(fmt.Sprintf("zkgate top · %s · %s\n\n%v\n", addr, time.Now().Format("15:04:05"), err), w, h)
				} else {
					screen = renderTop(st, ensemble, addr, time.Now(), w, h)
				}
				io.WriteString(out, "\x1b[H\x1b[2J"+screen)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "admin", "127.0.0.1:9181", "zkgate's admin address")
	cmd.Flags().StringVar(&ensemble, "ensemble", "", "the ensemble whose hot spots to show (default the first)")
	cmd.Flags().DurationVar(&every, "interval", 2*time.Second, "time between refreshes")
	cmd.Flags().IntVarP(&iterations, "iterations", "n", 0, "refresh this many times, then exit (0: until Ctrl-C)")
	return cmd
}

// renderTop draws one screen of w columns and at most h rows (the last row stays empty,
// so the terminal does not scroll).
func renderTop(st admin.Status, ensemble, addr string, now time.Time, w, h int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "zkgate %s · %s · %s · Ctrl-C quits\n", st.Version, addr, now.Format("15:04:05"))
	var shown *admin.EnsembleStatus
	var problems []string
	for i := range st.Ensembles {
		e := &st.Ensembles[i]
		if shown == nil && (ensemble == "" || e.Name == ensemble) {
			shown = e
		}
		serving := 0
		for _, m := range e.Members {
			if m.Serving {
				serving++
			}
			switch {
			case !m.Serving:
				p := fmt.Sprintf("! %s: %s %s since %s (%s)", e.Name, m.Address, m.Status, m.Since.Format("15:04:05"), since(now, m.Since))
				if m.LastError != "" {
					p += ": " + m.LastError
				}
				problems = append(problems, p)
			case m.Ejected:
				problems = append(problems, fmt.Sprintf("! %s: %s ejected until %s: %s", e.Name, m.Address, m.EjectedUntil.Format("15:04:05"), m.EjectedReason))
			}
		}
		quorum := "quorum"
		if !e.Quorum {
			quorum = "NO QUORUM"
			if e.ReadOnlyService {
				quorum += " (read-only service)"
			}
		}
		fmt.Fprintf(&b, "%s  %s  breaker %s  %s  %d/%d serving  %d sessions\n", e.Name, readyWord(e.Ready),
			strings.ToUpper(e.Breaker.State), quorum, serving, len(e.Members), e.Sessions)
		if e.Breaker.State != "closed" && len(e.Breaker.History) > 0 {
			t := e.Breaker.History[len(e.Breaker.History)-1]
			problems = append([]string{fmt.Sprintf("! %s: breaker %s since %s (%s): %s", e.Name, e.Breaker.State,
				t.At.Format("15:04:05"), since(now, t.At), t.Reason)}, problems...)
		}
	}
	for _, p := range problems[:min(len(problems), 3)] {
		b.WriteString(p + "\n")
	}
	if len(problems) > 3 {
		fmt.Fprintf(&b, "! and %d more (zkgate status)\n", len(problems)-3)
	}
	if shown == nil {
		return clip(b.String(), w, h)
	}
	r := shown.Hotspots
	if r == nil {
		b.WriteString("\nhot spots are off (hotspots.enabled)\n")
		return clip(b.String(), w, h)
	}
	used := strings.Count(b.String(), "\n") + 1 // and the blank line below
	rows := max((h-1-used)/3-1, 1)              // three sections, each with its heading
	keyW := max(w-40, 12)
	fmt.Fprintf(&b, "\n")
	section := func(title string, entries []hotspot.Entry) {
		fmt.Fprintf(&b, "%-*s %8s %8s %10s %9s\n", keyW, fmt.Sprintf("%s (%s, last %.0fs)", title, shown.Name, r.Seconds),
			"REQ/S", "ERR/S", "BYTES/S", "SINCE")
		for _, e := range entries[:min(rows, len(entries))] {
			fmt.Fprintf(&b, "%-*s %8s %8s %10s %9s\n", keyW, fit(e.Key, keyW), rate(e.RequestsPerSec), rate(e.ErrorsPerSec),
				byteRate(e.BytesPerSec), e.Since.Format("15:04:05"))
		}
		if len(entries) == 0 {
			b.WriteString("  (no traffic)\n")
		}
	}
	section("CLIENTS", r.Clients.ByRequests)
	section("PATHS", r.Paths.ByRequests)
	section("SESSIONS", r.Sessions.ByRequests)
	return clip(b.String(), w, h)
}

func readyWord(ok bool) string {
	if ok {
		return "ready"
	}
	return "NOT READY"
}

func since(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < time.Minute {
		return d.String()
	}
	return d.Truncate(time.Second).String()
}

func rate(v float64) string {
	switch {
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func byteRate(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// fit cuts s to n columns, marking the cut.
func fit(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// clip keeps each line within w columns and the screen within h-1 lines.
func clip(s string, w, h int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > h-1 {
		lines = lines[:h-1]
	}
	for i, l := range lines {
		lines[i] = fit(l, w)
	}
	return strings.Join(lines, "\n") + "\n"
}
