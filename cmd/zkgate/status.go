package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/admin"
)

// fetchStatus reads a running zkgate's /api/v1/status from its admin address.
func fetchStatus(addr string, timeout time.Duration) (admin.Status, []byte, error) {
	var st admin.Status
	url := "http://" + strings.TrimPrefix(addr, "http://") + "/api/v1/status"
	client := http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return st, nil, fmt.Errorf("is zkgate running with its admin server on %s? %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, nil, fmt.Errorf("%s: not zkgate's status: %w", url, err)
	}
	return st, body, nil
}

func newStatusCmd() *cobra.Command {
	var addr, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running zkgate's ensembles, members, sessions and breakers",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want table or json", output)}
			}
			st, body, err := fetchStatus(addr, timeout)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				_, err := out.Write(body)
				return err
			}
			printStatus(out, st)
			for _, e := range st.Ensembles {
				if !e.Ready {
					return exitError{1}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "admin", "127.0.0.1:9181", "zkgate's admin address")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "deadline for the request")
	return cmd
}

func printStatus(w io.Writer, st admin.Status) {
	fmt.Fprintf(w, "zkgate %s, up %s\n", st.Version, time.Since(st.StartedAt).Round(time.Second))
	if c := st.Config; c != nil {
		fmt.Fprintf(w, "configuration %s, loaded %s", c.Hash, c.LoadedAt.Format(time.RFC3339))
		if r := c.LastReload; r != nil {
			fmt.Fprintf(w, "; last reload %s: %s", r.At.Format(time.RFC3339), r.Result)
			if r.Error != "" {
				fmt.Fprintf(w, " (%s)", r.Error)
			}
			if len(r.NeedsRestart) > 0 {
				fmt.Fprintf(w, "; needs a restart: %s", strings.Join(r.NeedsRestart, ", "))
			}
		}
		fmt.Fprintln(w)
	}
	for _, e := range st.Ensembles {
		ready := "ready"
		if !e.Ready {
			ready = "NOT READY"
		}
		fmt.Fprintf(w, "\nensemble %s on %s: %s, breaker %s, %d sessions, quorum %v\n", e.Name, e.Listen, ready, e.Breaker.State, e.Sessions, e.Quorum)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tMODE\tHEALTH\tEJECTED\tSESSIONS\tZXID\tPROBE_MS")
		for _, m := range e.Members {
			mode, ej := m.Mode, "no"
			if mode == "" {
				mode = "-"
			}
			if m.Ejected {
				ej = "until " + m.EjectedUntil.Format("15:04:05")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%.2f\n", m.Address, mode, m.Status, ej, m.Sessions, m.Zxid, m.LatencyMs)
		}
		tw.Flush()
		if n := len(e.Breaker.History); n > 0 {
			last := e.Breaker.History[n-1]
			fmt.Fprintf(w, "last breaker change %s ago: %s -> %s (%s)\n", time.Since(last.At).Round(time.Second), last.FromName, last.ToName, last.Reason)
		}
	}
}
