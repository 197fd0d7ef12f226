package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/certs"
	"github.com/zkgate/zkgate/config"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/proxy"
)

// removeDrain bounds how long a member a reload removed may take to answer the requests
// in flight before its sessions move anyway.
const removeDrain = 5 * time.Second

// gateway is one ensemble zkgate serves: its health monitor, breaker, ejector, proxy
// server, listeners and TLS files. A reload applies a new configuration to it in place.
type gateway struct {
	cfg     config.Ensemble
	log     zerolog.Logger
	srv     *proxy.Server
	mon     *health.Monitor
	brk     *breaker.Ensemble
	certs   []*certs.Source
	memTLS  *tls.Config // the member side's TLS, nil when off
	plain   string      // bound addresses ("" when none)
	secure  string
	servErr chan<- error
}

// ensembleTLS loads an ensemble's TLS files: the client listener's config (nil without
// one) and the member side's (nil when off).
func ensembleTLS(e config.Ensemble, log zerolog.Logger) (listener, member *tls.Config, srcs []*certs.Source, err error) {
	if e.TLS.Listen != "" {
		src, err := certs.Load(certs.Files{Cert: e.TLS.Cert, Key: e.TLS.Key, CA: e.TLS.ClientCA}, log)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ensemble %s: tls: %w", e.Name, err)
		}
		minV, _ := certs.ParseVersion(e.TLS.MinVersion) // checked by Validate
		ciphers, _ := certs.ParseCiphers(e.TLS.Ciphers)
		listener, srcs = src.ServerConfig(certs.Settings{MinVersion: minV, Ciphers: ciphers}), append(srcs, src)
	}
	if m := e.MemberTLS; m.Enabled {
		src, err := certs.Load(certs.Files{Cert: m.Cert, Key: m.Key, CA: m.CA}, log)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ensemble %s: member_tls: %w", e.Name, err)
		}
		member, srcs = src.ClientConfig(m.ServerName), append(srcs, src)
	}
	return listener, member, srcs, nil
}

// startGateway starts serving e; serve errors go to servErr.
func startGateway(e config.Ensemble, log zerolog.Logger, metrics *admin.Metrics, servErr chan<- error) (*gateway, error) {
	elog := log.With().Str("ensemble", e.Name).Logger()
	lnTLS, memTLS, srcs, err := ensembleTLS(e, elog)
	if err != nil {
		return nil, err
	}
	g := &gateway{cfg: e, log: elog, certs: srcs, memTLS: memTLS, servErr: servErr}
	g.mon = g.newMonitor(e)
	g.brk = breaker.NewEnsemble(e.Name, e.Breaker.Config(), log)
	pc := e.Proxy()
	pc.MemberTLS = memTLS
	g.srv = proxy.NewServer(pc, g.mon, log, proxy.WithBreaker(g.brk), proxy.WithEjector(breaker.NewEjector(e.Members, e.Ejection.Config(), elog)),
		proxy.WithObserver(metrics.Observer(e.Name, g.brk)))
	g.mon.Subscribe(g.srv.ApplyView)
	g.mon.SetProgress(g.srv.LastAnswer)
	g.mon.SetAnswered(g.srv.ProbeAnswered)
	var lns []net.Listener
	fail := func(err error) (*gateway, error) {
		for _, ln := range lns {
			ln.Close()
		}
		g.srv.Close()
		g.mon.Close()
		return nil, err
	}
	if e.Listen != "" {
		ln, err := net.Listen("tcp", e.Listen)
		if err != nil {
			return fail(fmt.Errorf("ensemble %s: listen %s: %w", e.Name, e.Listen, err))
		}
		lns, g.plain = append(lns, ln), ln.Addr().String()
	}
	if e.TLS.Listen != "" {
		ln, err := net.Listen("tcp", e.TLS.Listen)
		if err != nil {
			return fail(fmt.Errorf("ensemble %s: tls.listen %s: %w", e.Name, e.TLS.Listen, err))
		}
		lns, g.secure = append(lns, ln), ln.Addr().String()
	}
	for _, ln := range lns {
		if ln.Addr().String() == g.secure {
			go func() { servErr <- g.srv.ServeTLS(ln, lnTLS) }()
		} else {
			go func() { servErr <- g.srv.Serve(ln) }()
		}
	}
	elog.Info().Str("listen", g.plain).Str("tls_listen", g.secure).Strs("members", e.Members).Str("routing", e.Routing).
		Bool("member_tls", memTLS != nil).Bool("breaker", e.Breaker.Enabled).Bool("ejection", e.Ejection.Enabled).Msg("zkgate serving ensemble")
	return g, nil
}

func (g *gateway) newMonitor(e config.Ensemble) *health.Monitor {
	var opts []health.Option
	if g.memTLS != nil {
		opts = append(opts, health.WithDialer(proxy.MemberDialer(g.memTLS)))
	}
	m := health.NewMonitor(e.Members, e.HealthConfig(), g.log.With().Str("component", "health").Logger(), opts...)
	m.Start() // returns once every member has been probed: the first view is whole
	return m
}

// admin is the gateway as the admin server lists it.
func (g *gateway) admin() admin.Ensemble {
	listen := g.plain
	if g.secure != "" {
		listen = joinNonEmpty(g.plain, "tls "+g.secure)
	}
	return admin.Ensemble{Name: g.cfg.Name, Listen: listen, Server: g.srv, Monitor: g.mon}
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// apply moves the gateway to n, the same ensemble's new settings, without touching
// sessions the change does not concern: it returns what changed and what needs a restart
// to change (kept as it was).
func (g *gateway) apply(n config.Ensemble) (changed, restart []string) {
	o := g.cfg
	if n.Listen != o.Listen {
		restart = append(restart, fmt.Sprintf("ensembles[%s].listen (%s, asked %s)", o.Name, o.Listen, n.Listen))
		n.Listen = o.Listen
	}
	if !reflect.DeepEqual(n.TLS, o.TLS) || !reflect.DeepEqual(n.MemberTLS, o.MemberTLS) {
		restart = append(restart, fmt.Sprintf("ensembles[%s].tls and member_tls (their files reload when they change)", o.Name))
		n.TLS, n.MemberTLS = o.TLS, o.MemberTLS
	}
	if n.Relay.Driver != o.Relay.Driver {
		restart = append(restart, fmt.Sprintf("ensembles[%s].relay.driver", o.Name))
		n.Relay.Driver = o.Relay.Driver
	}
	membersChanged := !slices.Equal(n.Members, o.Members)
	if membersChanged || n.Health != o.Health {
		old := g.mon
		g.mon = g.newMonitor(n)
		g.srv.SetViews(g.mon)
		g.mon.Subscribe(g.srv.ApplyView)
		g.mon.SetProgress(g.srv.LastAnswer)
		g.mon.SetAnswered(g.srv.ProbeAnswered)
		old.Close()
		changed = append(changed, "members and health")
	}
	if membersChanged || n.Ejection != o.Ejection {
		g.srv.SetEjector(breaker.NewEjector(n.Members, n.Ejection.Config(), g.log))
		changed = append(changed, "ejection")
	}
	if membersChanged || n.Health != o.Health || n.Ejection != o.Ejection {
		// The new monitor reports changes only: its first view goes to the breaker and
		// the new ejector now (a member down at the reload is ejected at once).
		g.srv.ApplyView(*g.mon.View())
	}
	if membersChanged {
		for _, m := range o.Members {
			if !slices.Contains(n.Members, m) {
				moved := g.srv.DrainOff(m, "member removed from the configuration", removeDrain)
				g.log.Info().Str("member", m).Int("sessions", moved).Msg("member removed by a reload: its sessions move off it once it has answered what they have in flight")
			}
		}
	}
	if n.Breaker != o.Breaker {
		g.brk.Reconfigure(n.Breaker.Config())
		changed = append(changed, "breaker")
	}
	np, op := n.Proxy(), o.Proxy()
	np.MemberTLS, op.MemberTLS = g.memTLS, g.memTLS
	if !reflect.DeepEqual(np, op) {
		g.srv.Reconfigure(np)
		changed = append(changed, "routing, relay, limits and hot spots")
	}
	g.cfg = n
	return changed, restart
}
