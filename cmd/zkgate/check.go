package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/health"
)

func newCheckCmd() *cobra.Command {
	var timeout time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "check host:port[,host:port...]",
		Short: "Probe an ensemble once with four-letter words and print what zkgate would see",
		Long: "check asks every member srvr (and mntr, conf, ruok, isro where whitelisted), prints a table,\n" +
			"and warns about problems for a proxy: maxClientCnxns limits, a missing leader or quorum,\n" +
			"lagging zxids, a restrictive 4lw whitelist, mixed versions.\n" +
			"Exit code: 0 healthy, 1 degraded, 2 bad arguments.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, err := parseMembers(args[0])
			if err != nil {
				return usageError{err}
			}
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want table or json", output)}
			}
			a := health.Assess(health.InspectAll(cmd.Context(), addrs, timeout))
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(a); err != nil {
					return err
				}
			} else {
				printCheck(cmd.OutOrStdout(), a)
			}
			if !a.Healthy {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Second, "deadline for each four-letter word")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// parseMembers splits a comma-separated member list and checks each is host:port.
func parseMembers(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("member %q: want host:port", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no members in %q", s)
	}
	return out, nil
}

func printCheck(w io.Writer, a health.Assessment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tMODE\tZXID\tLATENCY\tCONNECTIONS\tOUTSTANDING\tVERSION\tPROBLEMS")
	for _, r := range a.Members {
		mode, conns, outst, ver := r.State, "-", "-", "-"
		if r.Mode != "" {
			mode = r.Mode
		}
		if r.Srvr != nil {
			conns, outst = fmt.Sprint(r.Srvr.Connections), fmt.Sprint(r.Srvr.Outstanding)
			ver = r.Srvr.Version
		}
		problems := "-"
		if len(r.Problems) > 0 {
			problems = strings.Join(r.Problems, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t0x%x\t%.1fms\t%s\t%s\t%s\t%s\n", r.Address, mode, r.Zxid, r.Latency, conns, outst, ver, problems)
	}
	tw.Flush()
	leader := a.Leader
	if leader == "" {
		leader = "none"
	}
	verdict := "healthy"
	if !a.Healthy {
		verdict = "DEGRADED"
	}
	fmt.Fprintf(w, "\nleader: %s  quorum: %v  verdict: %s\n", leader, a.Quorum, verdict)
	for _, p := range a.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}
