package main

import (
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/internal/zktest"
)

func newDemoCmd() *cobra.Command {
	var members int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local ZooKeeper ensemble from the installed ZooKeeper (Ctrl-C stops it)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "starting a %d-member ZooKeeper ensemble on loopback...\n", members)
			ens, err := zktest.New(zktest.Config{Members: members, TickTime: 2 * time.Second})
			if err != nil {
				return err
			}
			defer ens.Close()
			fmt.Fprintf(out, "ensemble ready: %s\n", ens.ConnectString())
			fmt.Fprintf(out, "try: java -cp %s org.apache.zookeeper.ZooKeeperMain -server %s ls /\n", ens.Install().ClassPath, ens.ConnectString())
			fmt.Fprintln(out, "Ctrl-C stops it and removes its data.")
			<-ctx.Done()
			fmt.Fprintln(out, "stopping")
			return nil
		},
	}
	cmd.Flags().IntVar(&members, "members", 3, "voting members in the local ensemble")
	return cmd
}
