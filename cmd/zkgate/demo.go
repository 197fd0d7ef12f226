package main

import (
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/config"
	"github.com/zkgate/zkgate/internal/zkens"
)

func newDemoCmd() *cobra.Command {
	var members int
	var listen, admin string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local ZooKeeper ensemble from the installed ZooKeeper with zkgate in front (Ctrl-C stops both)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "starting a %d-member ZooKeeper ensemble on loopback...\n", members)
			ens, err := zkens.New(zkens.Config{Members: members, TickTime: 2 * time.Second})
			if err != nil {
				return err
			}
			defer ens.Close()
			fmt.Fprintf(out, "ensemble ready: %s\n", ens.ConnectString())
			f := config.Default()
			f.Admin.Listen = admin
			e := config.DefaultEnsemble()
			e.Name, e.Listen, e.Members = "demo", listen, ens.Addrs()
			f.Ensembles = []config.Ensemble{e}
			if err := f.Validate(); err != nil {
				return usageError{err}
			}
			return serveConfig(ctx, f, func(r running) {
				client := r.Clients["demo"]
				fmt.Fprintf(out, "\nzkgate listening on %s\n", client)
				fmt.Fprintf(out, "status page: http://%s/   metrics: http://%s/metrics\n", r.Admin, r.Admin)
				fmt.Fprintf(out, "try: java -cp %s org.apache.zookeeper.ZooKeeperMain -server %s ls /\n", ens.Install().ClassPath, client)
				fmt.Fprintf(out, "     zkgate status --admin %s\n", r.Admin)
				fmt.Fprintf(out, "     zkgate check %s\n", ens.ConnectString())
				fmt.Fprintln(out, "Ctrl-C stops zkgate and the ensemble and removes its data.")
			})
		},
	}
	cmd.Flags().IntVar(&members, "members", 3, "voting members in the local ensemble")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:2181", "zkgate's client address")
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:9181", "zkgate's admin address")
	return cmd
}
