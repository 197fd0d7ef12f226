package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/proxy"
)

type serveOptions struct {
	listen, ensemble, admin, policy string
	adminPublic                     bool
	health                          health.Config
	proxy                           proxy.Config
	logLevel, logFormat             string
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run zkgate in front of an ensemble",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, o, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:2181", "client address to listen on")
	f.StringVar(&o.ensemble, "ensemble", "", "members, host:port,host:port,... (required)")
	f.StringVar(&o.admin, "admin", "127.0.0.1:9181", "admin HTTP address (/metrics, /healthz, /readyz); empty disables")
	f.BoolVar(&o.adminPublic, "admin-allow-public", false, "allow the admin server on a non-loopback address")
	f.StringVar(&o.policy, "policy", string(proxy.LeastConnections), "routing: least-connections, round-robin or any")
	f.DurationVar(&o.health.Interval, "health-interval", 500*time.Millisecond, "time between srvr probes of a member")
	f.DurationVar(&o.health.Timeout, "health-timeout", 300*time.Millisecond, "deadline for one probe")
	f.DurationVar(&o.proxy.HandshakeTimeout, "handshake-timeout", 10*time.Second, "deadline from accept to ConnectResponse")
	f.DurationVar(&o.proxy.DrainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM, how long sessions may drain before they are closed")
	f.IntVar(&o.proxy.MaxConnections, "max-connections", 0, "client connections limit (0 = none)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	return cmd
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	var w = zerolog.New(os.Stderr)
	switch format {
	case "json":
	case "console":
		w = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
	case "auto":
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			w = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
		}
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: want json, console or auto", format)
	}
	return w.Level(lvl).With().Timestamp().Logger(), nil
}

// serve runs until ctx ends. ready, when not nil, receives the client and admin addresses
// once both listen (tests and demo use it).
func serve(ctx context.Context, o serveOptions, ready func(client, admin string)) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return usageError{err}
	}
	members, err := parseMembers(o.ensemble)
	if err != nil {
		return usageError{fmt.Errorf("--ensemble: %w", err)}
	}
	switch proxy.Policy(o.policy) {
	case proxy.LeastConnections, proxy.RoundRobin, proxy.Any:
		o.proxy.Policy = proxy.Policy(o.policy)
	default:
		return usageError{fmt.Errorf("--policy %q: want least-connections, round-robin or any", o.policy)}
	}
	if o.admin != "" && !o.adminPublic && !isLoopback(o.admin) {
		return usageError{fmt.Errorf("--admin %s is not a loopback address; pass --admin-allow-public to expose it", o.admin)}
	}
	proxy.Version = buildVersion()

	mon := health.NewMonitor(members, o.health, log.With().Str("component", "health").Logger())
	mon.Start()
	defer mon.Close()
	srv := proxy.NewServer(o.proxy, mon, log)
	mon.Subscribe(srv.ApplyView)

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	adminAddr := ""
	if o.admin != "" {
		aln, err := net.Listen("tcp", o.admin)
		if err != nil {
			srv.Close()
			return fmt.Errorf("admin listen %s: %w", o.admin, err)
		}
		adminAddr = aln.Addr().String()
		hs := &http.Server{Handler: adminMux(srv), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(aln)
		defer hs.Close()
	}
	log.Info().Str("listen", ln.Addr().String()).Str("admin", adminAddr).Strs("members", members).Msg("zkgate serving")
	if ready != nil {
		ready(ln.Addr().String(), adminAddr)
	}
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down: draining sessions")
		srv.Shutdown(context.Background())
		<-serveErr
		return nil
	case err := <-serveErr:
		srv.Close()
		if errors.Is(err, proxy.ErrServerClosed) {
			return nil
		}
		return err
	}
}

func adminMux(srv *proxy.Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !srv.CanServe() {
			http.Error(w, "no member can take a session", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
