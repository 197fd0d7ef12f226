package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/config"
)

// membersValue is --ensemble: a comma-separated member list.
type membersValue struct{ list *[]string }

func (m membersValue) String() string { return strings.Join(*m.list, ",") }
func (m membersValue) Type() string   { return "host:port,..." }
func (m membersValue) Set(s string) error {
	l, err := parseMembers(s)
	if err == nil {
		*m.list = l
	}
	return err
}

// bindEnsembleFlags declares the flags that set one ensemble. serve binds them once to
// defaults for parsing, and again to the ensemble from the file to apply the ones given.
func bindEnsembleFlags(f *pflag.FlagSet, e *config.Ensemble) {
	f.StringVar(&e.Name, "name", e.Name, "ensemble name, in logs, metrics and the status API")
	f.StringVar(&e.Listen, "listen", e.Listen, "client address to listen on")
	f.Var(membersValue{&e.Members}, "ensemble", "members' client addresses, host:port,host:port,...")
	f.StringVar(&e.Routing, "policy", e.Routing, "routing: least-connections, least-connections-with-leader, round-robin, any or prefer-observers")
	f.IntVar(&e.Limits.MaxConnections, "max-connections", e.Limits.MaxConnections, "client connections on the listener (0 = no limit)")
	f.IntVar(&e.Limits.MaxConnectionsPerClient, "max-connections-per-client", e.Limits.MaxConnectionsPerClient, "client connections per client IP (0 = no limit)")
	f.DurationVar(&e.Limits.HandshakeTimeout, "handshake-timeout", e.Limits.HandshakeTimeout, "deadline from accept to ConnectResponse")
	f.DurationVar(&e.Limits.DrainTimeout, "drain-timeout", e.Limits.DrainTimeout, "on SIGTERM, how long sessions may drain before they are closed")
	f.Float64Var(&e.Limits.ClientRate, "client-rate", e.Limits.ClientRate, "requests per second per client IP; over it, the reject code (0 = no limit)")
	f.IntVar(&e.Limits.ClientBurst, "client-burst", e.Limits.ClientBurst, "burst of --client-rate (0 = the rate)")
	f.Float64Var(&e.Limits.SessionRate, "session-rate", e.Limits.SessionRate, "requests per second per session; over it, the reject code (0 = no limit)")
	f.IntVar(&e.Limits.SessionBurst, "session-burst", e.Limits.SessionBurst, "burst of --session-rate (0 = the rate)")
	f.IntVar(&e.Limits.MaxInFlightSession, "max-in-flight-per-session", e.Limits.MaxInFlightSession, "requests a session may have waiting on its member (0 = no cap)")
	f.DurationVar(&e.Relay.Coalesce, "coalesce", e.Relay.Coalesce, "under load, the longest a relay loop waits to gather frames per system call (0 = off)")
	f.Float64Var(&e.Relay.CoalesceShare, "coalesce-share", e.Relay.CoalesceShare, "and at most this share of the members' average reply latency")
	f.StringVar(&e.Relay.UnsafeInFlight, "unsafe-in-flight", e.Relay.UnsafeInFlight, "a write in flight when a session's member is lost: connection_loss (answer it with CONNECTIONLOSS and move the session), close (close the client), or auto (connection_loss for clients whose ConnectRequest has the readOnly byte: Java, C, kazoo)")
	f.DurationVar(&e.Relay.MoveTimeout, "move-timeout", e.Relay.MoveTimeout, "longest a session may take to move off a lost member before its client is closed (0 = a third of the session timeout)")
	f.StringVar(&e.Relay.Driver, "driver", e.Relay.Driver, "relay driver: epoll (Linux) or goroutines (empty = the OS's best)")
	f.StringVar(&e.TLS.Listen, "tls-listen", e.TLS.Listen, "a TLS listener for clients (zookeeper.client.secure=true), next to --listen")
	f.StringVar(&e.TLS.Cert, "tls-cert", e.TLS.Cert, "PEM server certificate for --tls-listen (reloaded when the file changes)")
	f.StringVar(&e.TLS.Key, "tls-key", e.TLS.Key, "PEM private key of --tls-cert")
	f.StringVar(&e.TLS.ClientCA, "tls-client-ca", e.TLS.ClientCA, "PEM CA bundle: clients must present a certificate it signed (mutual TLS)")
	f.BoolVar(&e.Hotspots.Enabled, "hotspots", e.Hotspots.Enabled, "count the heaviest clients, sessions and path prefixes (status page, mntr, zkgate top)")
	f.IntVar(&e.Hotspots.PathDepth, "hotspots-path-depth", e.Hotspots.PathDepth, "path components a hot spot keeps: /a/b/c at 2 is /a/b")
	f.DurationVar(&e.Health.Interval, "health-interval", e.Health.Interval, "time between srvr probes of a member")
	f.DurationVar(&e.Health.Timeout, "health-timeout", e.Health.Timeout, "deadline for one probe")
	b := &e.Breaker
	f.BoolVar(&b.Enabled, "breaker", b.Enabled, "ensemble circuit breaker on or off")
	f.Float64Var(&b.FailureRatio, "breaker-failure-ratio", b.FailureRatio, "failures/requests in the window that open the breaker")
	f.UintVar(&b.MinRequests, "breaker-min-requests", b.MinRequests, "requests in the window before the ratio counts")
	f.DurationVar(&b.Window, "breaker-window", b.Window, "failure-rate window")
	f.DurationVar(&b.SlowCall, "breaker-slow-call", b.SlowCall, "a reply later than this counts as a failure")
	f.DurationVar(&b.OpenFor, "breaker-open-for", b.OpenFor, "time open before half-open, when failures opened it (opened by health, it half-opens when health is back)")
	f.UintVar(&b.HalfOpenProbes, "breaker-half-open-probes", b.HalfOpenProbes, "successful probes that close the breaker")
	f.Float64Var(&b.HalfOpenAdmission, "breaker-half-open-admission", b.HalfOpenAdmission, "new sessions per second while half-open")
	f.Var(&b.RejectCode, "breaker-reject-code", "answer to refused requests: operation_timeout (-7), throttled (-127) or a number")
	f.BoolVar(&e.Ejection.Enabled, "ejection", e.Ejection.Enabled, "member ejection (outlier detection) on or off")
	f.DurationVar(&e.Ejection.BaseTime, "ejection-base-time", e.Ejection.BaseTime, "first ejection time; doubles with each repeat")
}

type serveOptions struct {
	configPath, adminListen, logLevel, logFormat string
	adminPublic, adminPprof, check               bool
	ens                                          config.Ensemble // flag values; applied where given
}

func newServeCmd() *cobra.Command {
	o := serveOptions{ens: config.DefaultEnsemble()}
	d := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run zkgate in front of one ensemble (flags) or several (--config)",
		Example: "  zkgate serve --listen 127.0.0.1:2181 --ensemble zk1:2181,zk2:2181,zk3:2181\n" +
			"  zkgate serve --config zkgate.yaml",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := o.resolve(cmd.Flags())
			if err != nil {
				return usageError{err}
			}
			if o.check {
				for _, e := range f.Ensembles {
					fmt.Fprintf(cmd.OutOrStdout(), "ensemble %s: listen %s, members %s, breaker %v, ejection %v\n",
						e.Name, e.Listen, strings.Join(e.Members, ","), e.Breaker.Enabled, e.Ejection.Enabled)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "configuration ok")
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var source func() (config.File, error)
			if o.configPath != "" {
				// SIGHUP (or POST /-/reload) reads the file again; the flags given still apply.
				source = func() (config.File, error) { return o.resolve(cmd.Flags()) }
			}
			return serveReloadable(ctx, f, source, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.configPath, "config", "", "YAML configuration file (see testdata/zkgate.yaml); flags given override it")
	fl.BoolVar(&o.check, "check", false, "check the configuration and exit")
	fl.StringVar(&o.adminListen, "admin", d.Admin.Listen, "admin HTTP address (/, /metrics, /healthz, /readyz, /api/v1/status); empty disables")
	fl.BoolVar(&o.adminPublic, "admin-allow-public", false, "allow the admin server on a non-loopback address")
	fl.BoolVar(&o.adminPprof, "pprof", false, "serve Go's profiles at /debug/pprof/ on the admin address (loopback only)")
	fl.StringVar(&o.logLevel, "log-level", d.Log.Level, "debug, info, warn or error")
	fl.StringVar(&o.logFormat, "log-format", d.Log.Format, "json, console, or auto (console on a terminal)")
	bindEnsembleFlags(fl, &o.ens)
	return cmd
}

// resolve builds the configuration: the file (or one ensemble from flags), then every
// flag given on the command line over it.
func (o *serveOptions) resolve(fl *pflag.FlagSet) (config.File, error) {
	var f config.File
	if o.configPath != "" {
		var err error
		if f, err = config.Load(o.configPath); err != nil {
			return f, err
		}
	} else {
		f = config.Default()
		f.Ensembles = []config.Ensemble{config.DefaultEnsemble()}
	}
	if fl.Changed("admin") {
		f.Admin.Listen = o.adminListen
	}
	if fl.Changed("admin-allow-public") {
		f.Admin.AllowPublic = o.adminPublic
	}
	if fl.Changed("pprof") {
		f.Admin.Pprof = o.adminPprof
	}
	if fl.Changed("log-level") {
		f.Log.Level = o.logLevel
	}
	if fl.Changed("log-format") {
		f.Log.Format = o.logFormat
	}
	ensFlags := pflag.NewFlagSet("ensemble", pflag.ContinueOnError)
	var given []string
	bindEnsembleFlags(ensFlags, &config.Ensemble{})
	ensFlags.VisitAll(func(ef *pflag.Flag) {
		if fl.Changed(ef.Name) {
			given = append(given, ef.Name)
		}
	})
	if len(given) > 0 {
		if len(f.Ensembles) != 1 {
			return f, fmt.Errorf("--%s sets one ensemble, and %s has %d: set it in the file", given[0], o.configPath, len(f.Ensembles))
		}
		apply := pflag.NewFlagSet("apply", pflag.ContinueOnError)
		bindEnsembleFlags(apply, &f.Ensembles[0])
		for _, name := range given {
			if err := apply.Set(name, fl.Lookup(name).Value.String()); err != nil {
				return f, fmt.Errorf("--%s: %w", name, err)
			}
		}
	}
	if o.configPath == "" && len(f.Ensembles[0].Members) == 0 {
		return f, errors.New("--ensemble is required (or --config)")
	}
	if _, err := newLogger(f.Log.Level, f.Log.Format); err != nil {
		return f, err
	}
	if err := f.Validate(); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) && o.configPath == "" {
			return f, fmt.Errorf("%s: %s", ce.Key, ce.Msg) // flags: no file or line to name
		}
		return f, err
	}
	return f, nil
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	var w = zerolog.New(logOutput)
	switch format {
	case "json":
	case "console":
		w = zerolog.New(zerolog.ConsoleWriter{Out: logOutput})
	case "auto":
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			w = zerolog.New(zerolog.ConsoleWriter{Out: logOutput})
		}
	default:
		return zerolog.Logger{}, fmt.Errorf("log format %q: want json, console or auto", format)
	}
	return w.Level(lvl).With().Timestamp().Logger(), nil
}

// logOutput is where zkgate logs; tests read it.
var logOutput io.Writer = os.Stderr

// sampleEvery is the status page's chart resolution; tests shorten it.
var sampleEvery = admin.SampleEvery
