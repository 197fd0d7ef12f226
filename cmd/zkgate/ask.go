package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/health"
)

// newAskCmd sends one four-letter word: to a member, or to zkgate itself (the
// docker-compose healthcheck asks zkgate ruok; the image has no shell or nc).
func newAskCmd() *cobra.Command {
	var expect string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "ask <host:port> <four-letter word>",
		Short:   "Send a four-letter word (ruok, srvr, mntr, ...) and print the answer",
		Example: "  zkgate ask 127.0.0.1:2181 srvr\n  zkgate ask --expect imok 127.0.0.1:2181 ruok   # exit 1 unless the answer is imok",
		Args:    usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := health.Ask(cmd.Context(), args[0], args[1], timeout)
			fmt.Fprint(cmd.OutOrStdout(), out)
			if out != "" && !strings.HasSuffix(out, "\n") {
				fmt.Fprintln(cmd.OutOrStdout())
			}
			if expect != "" && strings.TrimSpace(out) != expect {
				if err == nil {
					err = fmt.Errorf("answer %q, want %q", strings.TrimSpace(out), expect)
				}
				return err
			}
			if expect == "" && err != nil && out == "" {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&expect, "expect", "", "exit 1 unless the answer (trimmed) is this")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "deadline for the answer")
	return cmd
}
