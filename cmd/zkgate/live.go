package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/certs"
	"github.com/zkgate/zkgate/config"
	"github.com/zkgate/zkgate/proxy"
	"go.yaml.in/yaml/v3"
)

// running is what serveConfig started, for its ready callback.
type running struct {
	Clients    map[string]string // ensemble name -> client address
	TLSClients map[string]string // ensemble name -> TLS client address, for those with one
	Admin      string
}

// serveConfig serves f until ctx ends, then drains. ready, when not nil, is called once every
// listener is up (tests and demo use it).
func serveConfig(ctx context.Context, f config.File, ready func(running)) error {
	return serveReloadable(ctx, f, nil, ready)
}

// live is a serving zkgate: its gateways, by ensemble, and what a reload changes.
type live struct {
	log       zerolog.Logger
	metrics   *admin.Metrics
	set       *admin.Ensembles
	adm       *admin.Server
	servErr   chan error
	source    func() (config.File, error) // re-reads the configuration; nil without --config
	reloadsOK prometheus.Counter
	reloadsKO prometheus.Counter
	lastAt    prometheus.Gauge
	lastOK    prometheus.Gauge

	mu     sync.Mutex // one reload at a time
	file   config.File
	gates  []*gateway
	status admin.ConfigStatus
}

// serveReloadable is serveConfig with reloads: SIGHUP, or POST /-/reload on the admin
// server, re-reads the configuration through source.
func serveReloadable(ctx context.Context, f config.File, source func() (config.File, error), ready func(running)) error {
	log, err := newLogger(f.Log.Level, f.Log.Format)
	if err != nil {
		return usageError{err}
	}
	// The level is global, so that a reload can change it for every logger.
	defer zerolog.SetGlobalLevel(zerolog.GlobalLevel())
	zerolog.SetGlobalLevel(log.GetLevel())
	log = log.Level(zerolog.TraceLevel)
	version := buildVersion()
	proxy.Version = version
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rt := &live{log: log, metrics: admin.NewMetrics(reg, version), set: admin.NewEnsembles(nil),
		servErr: make(chan error, 64), source: source, file: f}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_config_reload_total",
		Help: "Configuration reloads (SIGHUP, POST /-/reload), by result: ok, or error (the old configuration stays)."}, []string{"result"})
	rt.reloadsOK, rt.reloadsKO = reloads.WithLabelValues("ok"), reloads.WithLabelValues("error")
	rt.lastAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkgate_config_last_reload_timestamp_seconds",
		Help: "When the configuration was last reloaded (or first loaded), Unix seconds."})
	rt.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkgate_config_last_reload_successful",
		Help: "1 if the last reload succeeded, 0 if its file was refused."})
	reg.MustRegister(reloads, rt.lastAt, rt.lastOK, admin.NewStateCollector(rt.set), admin.NewTLSCollector(rt.set))
	defer rt.closeAll()
	info := running{Clients: map[string]string{}, TLSClients: map[string]string{}}
	for _, e := range f.Ensembles {
		g, err := startGateway(e, log, rt.metrics, rt.servErr)
		if err != nil {
			return err
		}
		rt.gates = append(rt.gates, g)
		info.Clients[e.Name], info.TLSClients[e.Name] = g.plain, g.secure
	}
	rt.publish()
	now := time.Now()
	rt.status = admin.ConfigStatus{Hash: hashConfig(f), LoadedAt: now}
	rt.lastAt.Set(float64(now.Unix()))
	rt.lastOK.Set(1)
	if f.Admin.Listen != "" {
		aln, err := net.Listen("tcp", f.Admin.Listen)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", f.Admin.Listen, err)
		}
		info.Admin = aln.Addr().String()
		rt.adm = admin.NewServer(rt.set, version, reg)
		rt.adm.SetConfig(rt.status)
		rt.adm.OnReload(rt.reload)
		sampling, stopSampling := context.WithCancel(context.Background())
		defer stopSampling()
		go rt.adm.Sample(sampling, sampleEvery) // the status page's charts
		handler := rt.adm.Handler()
		if f.Admin.Pprof {
			handler = withPprof(handler)
			log.Warn().Str("admin", info.Admin).Msg("profiles served at /debug/pprof/ (admin.pprof)")
		}
		hs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(aln)
		defer hs.Close()
		log.Info().Str("admin", info.Admin).Msg("admin server: /, /metrics, /healthz, /readyz, /api/v1/status, POST /-/reload")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if ready != nil {
		ready(info)
	}
	for {
		select {
		case <-hup:
			rt.reload()
		case <-ctx.Done():
			log.Info().Msg("shutting down: draining sessions")
			var wg sync.WaitGroup
			rt.mu.Lock()
			for _, g := range rt.gates {
				wg.Add(1)
				go func() { defer wg.Done(); g.srv.Shutdown(context.Background()) }()
			}
			rt.mu.Unlock()
			wg.Wait()
			return nil
		case err := <-rt.servErr:
			if !errors.Is(err, proxy.ErrServerClosed) {
				return err
			}
		}
	}
}

func (rt *live) publish() {
	list := make([]admin.Ensemble, len(rt.gates))
	for i, g := range rt.gates {
		list[i] = g.admin()
	}
	rt.set.Set(list)
}

func (rt *live) closeAll() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, g := range rt.gates {
		g.srv.Close()
		g.mon.Close()
	}
}

// hashConfig is the configuration's fingerprint: the first 16 hex digits of the SHA-256
// of its YAML as zkgate understood it (file and flags).
func hashConfig(f config.File) string {
	b, _ := yaml.Marshal(f)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// reload re-reads the configuration and applies it: ensembles added are started, removed
// ones stop accepting and drain, kept ones change in place (gateway.apply). A file that
// does not load or validate changes nothing. Listen addresses of kept ensembles, the
// admin address and the log format need a restart; the reply and the log say so.
func (rt *live) reload() admin.ReloadStatus {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	now := time.Now()
	st := admin.ReloadStatus{At: now, Result: "ok"}
	defer func() {
		rt.lastAt.Set(float64(now.Unix()))
		if st.Result == "ok" {
			rt.reloadsOK.Inc()
			rt.lastOK.Set(1)
		} else {
			rt.reloadsKO.Inc()
			rt.lastOK.Set(0)
		}
		rt.status.LastReload = &st
		if rt.adm != nil {
			rt.adm.SetConfig(rt.status)
		}
	}()
	if rt.source == nil {
		st.Result, st.Error = "error", "zkgate was started without --config: there is no file to reload"
		rt.log.Error().Msg("reload: " + st.Error)
		return st
	}
	f, err := rt.source()
	if err != nil {
		st.Result, st.Error = "error", err.Error()
		rt.log.Error().Err(err).Str("kept_hash", rt.status.Hash).Msg("reload refused: the configuration stays as it was")
		return st
	}
	// Start what is new before changing anything, so a failure changes nothing.
	var added []*gateway
	for _, e := range f.Ensembles {
		if rt.gate(e.Name) != nil {
			continue
		}
		g, err := startGateway(e, rt.log, rt.metrics, rt.servErr)
		if err != nil {
			for _, a := range added {
				a.srv.Close()
				a.mon.Close()
			}
			st.Result, st.Error = "error", err.Error()
			rt.log.Error().Err(err).Str("kept_hash", rt.status.Hash).Msg("reload refused: the configuration stays as it was")
			return st
		}
		added = append(added, g)
		st.Changed = append(st.Changed, "ensemble "+e.Name+" added")
	}
	old := rt.file
	if f.Admin != old.Admin {
		st.NeedsRestart = append(st.NeedsRestart, "admin")
		f.Admin = old.Admin
	}
	if f.Log.Format != old.Log.Format {
		st.NeedsRestart = append(st.NeedsRestart, "log.format")
		f.Log.Format = old.Log.Format
	}
	if f.Log.Level != old.Log.Level {
		lvl, _ := zerolog.ParseLevel(f.Log.Level) // checked by resolve
		zerolog.SetGlobalLevel(lvl)
		st.Changed = append(st.Changed, "log.level "+f.Log.Level)
	}
	var gates []*gateway
	for _, e := range f.Ensembles {
		g := rt.gate(e.Name)
		if g == nil {
			g, added = added[0], added[1:]
		} else {
			changed, restart := g.apply(e)
			for _, c := range changed {
				st.Changed = append(st.Changed, "ensemble "+e.Name+": "+c)
			}
			st.NeedsRestart = append(st.NeedsRestart, restart...)
		}
		gates = append(gates, g)
	}
	for _, g := range rt.gates {
		if !slices.Contains(gates, g) {
			st.Changed = append(st.Changed, "ensemble "+g.cfg.Name+" removed")
			rt.log.Info().Str("ensemble", g.cfg.Name).Msg("ensemble removed by a reload: its listeners stop, its sessions drain")
			go func() {
				g.srv.Shutdown(context.Background())
				g.mon.Close()
			}()
		}
	}
	for _, src := range rt.sources(gates) {
		if err := src.Reload(); err != nil {
			rt.log.Error().Err(err).Msg("reload: TLS files do not load; the ones loaded before stay")
		}
	}
	// What was kept (listen addresses, admin, log format) goes into the active file.
	for i, g := range gates {
		f.Ensembles[i] = g.cfg
	}
	rt.gates, rt.file = gates, f
	rt.publish()
	rt.status.Hash, rt.status.LoadedAt = hashConfig(f), now
	ev := rt.log.Info()
	if len(st.NeedsRestart) > 0 {
		ev = rt.log.Warn().Strs("needs_restart", st.NeedsRestart)
	}
	ev.Strs("changed", st.Changed).Str("hash", rt.status.Hash).Msg("configuration reloaded")
	return st
}

func (rt *live) gate(name string) *gateway {
	for _, g := range rt.gates {
		if g.cfg.Name == name {
			return g
		}
	}
	return nil
}

// sources lists the TLS files of gates, for a reload to read again.
func (rt *live) sources(gates []*gateway) []*certs.Source {
	var out []*certs.Source
	for _, g := range gates {
		out = append(out, g.certs...)
	}
	return out
}
