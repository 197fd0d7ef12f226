// Package config reads zkgate's YAML file: several ensembles, each with its listener,
// members, routing, limits, health, breaker and ejection settings, plus the admin server
// and logging. Unknown keys are refused, and every error names the key and its line.
// testdata/zkgate.yaml is the commented example.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/certs"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/proxy"
	"go.yaml.in/yaml/v3"
)

// File is the whole configuration.
type File struct {
	Admin     Admin      `yaml:"admin"`
	Log       Log        `yaml:"log"`
	Ensembles []Ensemble `yaml:"ensembles"`
}

// Admin is the admin HTTP server.
type Admin struct {
	Listen      string `yaml:"listen"`       // "" turns it off
	AllowPublic bool   `yaml:"allow_public"` // a non-loopback listen address must be asked for
}

// Log is logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, console, auto (console on a terminal)
}

// Ensemble is one ensemble zkgate fronts.
type Ensemble struct {
	Name     string   `yaml:"name"`
	Listen   string   `yaml:"listen"`
	Members  []string `yaml:"members"`
	Routing  string   `yaml:"routing"`
	Limits   Limits   `yaml:"limits"`
	Relay    Relay    `yaml:"relay"`
	Health   Health   `yaml:"health"`
	Breaker  Breaker  `yaml:"breaker"`
	Ejection Ejection `yaml:"ejection"`
	Hotspots Hotspots `yaml:"hotspots"`
	// TLS serves clients that connect with TLS (zookeeper.client.secure=true) on a
	// listener of its own, next to Listen (or instead of it, when Listen is "").
	TLS TLS `yaml:"tls"`
	// MemberTLS reaches the members on their secureClientPort: Members then lists those
	// ports, and health probes use the same TLS.
	MemberTLS MemberTLS `yaml:"member_tls"`
}

// TLS is a client-side TLS listener. The files are PEM; they are reloaded when they
// change (looked at once a second at most, as clients connect), and on SIGHUP.
type TLS struct {
	Listen     string   `yaml:"listen"`      // "" = no TLS listener
	Cert       string   `yaml:"cert"`        // the server certificate (chain)
	Key        string   `yaml:"key"`         // its private key
	ClientCA   string   `yaml:"client_ca"`   // when set, clients must present a certificate it signed (mutual TLS)
	MinVersion string   `yaml:"min_version"` // 1.2 or 1.3
	Ciphers    []string `yaml:"ciphers"`     // TLS 1.2 suites by name; empty = Go's defaults
}

// MemberTLS is how zkgate reaches members over TLS.
type MemberTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CA         string `yaml:"ca"`          // verifies the members' certificates ("" = the system's roots)
	Cert       string `yaml:"cert"`        // zkgate's client certificate, for ssl.clientAuth=need
	Key        string `yaml:"key"`         // and its key
	ServerName string `yaml:"server_name"` // the name checked in members' certificates; "" = each member's host
}

// Hotspots finds the heaviest clients, sessions and path prefixes (proxy.Hotspots).
type Hotspots struct {
	Enabled   bool          `yaml:"enabled"`
	PathDepth int           `yaml:"path_depth"` // path components kept: /a/b/c at 2 is /a/b
	Capacity  int           `yaml:"capacity"`   // keys each sketch keeps (fixed memory)
	Window    time.Duration `yaml:"window"`     // rates are over the last complete window
}

// Limits bound what one client can cost.
type Limits struct {
	MaxConnections          int           `yaml:"max_connections"`            // per listener; 0 = none
	MaxConnectionsPerClient int           `yaml:"max_connections_per_client"` // per client IP; 0 = none
	MaxFrame                int           `yaml:"max_frame"`                  // largest frame payload, bytes
	HandshakeTimeout        time.Duration `yaml:"handshake_timeout"`
	DrainTimeout            time.Duration `yaml:"drain_timeout"`
	// Protection from one client (proxy.Limits); 0 = off.
	ClientRate         float64 `yaml:"client_rate"`
	ClientBurst        int     `yaml:"client_burst"`
	SessionRate        float64 `yaml:"session_rate"`
	SessionBurst       int     `yaml:"session_burst"`
	MaxInFlightSession int     `yaml:"max_in_flight_per_session"`
}

// Relay tunes the relay loops.
type Relay struct {
	// Coalesce is the longest a relay loop waits before reading, once 8 or more requests
	// are in flight on it, so that more frames travel per system call; 0 turns it off.
	Coalesce time.Duration `yaml:"coalesce"`
	// CoalesceShare bounds that wait to a share of the members' average reply latency.
	CoalesceShare float64 `yaml:"coalesce_share"`
	// MoveTimeout bounds moving a session off a lost member; past it the client is closed
	// and reconnects. 0: a third of the session's negotiated timeout.
	MoveTimeout time.Duration `yaml:"move_timeout"`
	// Driver runs placed sessions: "epoll" (Linux) or "goroutines"; empty: the OS's best.
	Driver string `yaml:"driver"`
}

// Health is how members are probed.
type Health struct {
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Rise     int           `yaml:"rise"`
	Fall     int           `yaml:"fall"`
}

// Routing policies (proxy.Policy values).
var Policies = []string{"least-connections", "round-robin", "any", "prefer-observers"}

// Default is the configuration without a file: the admin server on loopback, JSON logs
// (console on a terminal), and no ensemble.
func Default() File {
	return File{Admin: Admin{Listen: "127.0.0.1:9181"}, Log: Log{Level: "info", Format: "auto"}}
}

// DefaultEnsemble is an ensemble's settings before the file or flags say otherwise: each
// component's own defaults (proxy, health, breaker), stated nowhere else.
func DefaultEnsemble() Ensemble {
	p := proxy.DefaultConfig()
	return Ensemble{
		Name:    p.Name,
		Listen:  "127.0.0.1:2181",
		Routing: string(p.Policy),
		Limits: Limits{
			MaxFrame:                p.MaxFrame,
			HandshakeTimeout:        p.HandshakeTimeout,
			DrainTimeout:            p.DrainTimeout,
			MaxConnections:          p.MaxConnections,
			MaxConnectionsPerClient: p.MaxPerClient,
			ClientRate:              p.Limits.ClientRate,
			ClientBurst:             p.Limits.ClientBurst,
			SessionRate:             p.Limits.SessionRate,
			SessionBurst:            p.Limits.SessionBurst,
			MaxInFlightSession:      p.Limits.MaxInFlight,
		},
		Relay:    Relay{Coalesce: p.Coalesce, CoalesceShare: p.CoalesceShare, MoveTimeout: p.MoveTimeout, Driver: p.Driver},
		Health:   Health(health.DefaultConfig()),
		Breaker:  breakerSection(breaker.DefaultConfig()),
		Ejection: Ejection(breaker.DefaultEjectionConfig()),
		Hotspots: Hotspots(p.Hotspots),
		TLS:      TLS{MinVersion: "1.2"},
	}
}

// Proxy is the ensemble's data-path configuration.
func (e Ensemble) Proxy() proxy.Config {
	return proxy.Config{
		Name: e.Name, Policy: proxy.Policy(e.Routing), MaxFrame: e.Limits.MaxFrame,
		HandshakeTimeout: e.Limits.HandshakeTimeout, DrainTimeout: e.Limits.DrainTimeout,
		MaxConnections: e.Limits.MaxConnections, MaxPerClient: e.Limits.MaxConnectionsPerClient,
		Coalesce: e.Relay.Coalesce, CoalesceShare: e.Relay.CoalesceShare,
		MoveTimeout: e.Relay.MoveTimeout, Driver: e.Relay.Driver,
		Limits: proxy.Limits{ClientRate: e.Limits.ClientRate, ClientBurst: e.Limits.ClientBurst,
			SessionRate: e.Limits.SessionRate, SessionBurst: e.Limits.SessionBurst, MaxInFlight: e.Limits.MaxInFlightSession},
		Hotspots: proxy.Hotspots(e.Hotspots),
	}
}

// HealthConfig is the ensemble's health checking.
func (e Ensemble) HealthConfig() health.Config { return health.Config(e.Health) }

func (t TLS) validate() error {
	if t.Listen == "" {
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return errors.New("a TLS listener needs cert and key")
	}
	if _, err := certs.ParseVersion(t.MinVersion); err != nil {
		return err
	}
	_, err := certs.ParseCiphers(t.Ciphers)
	return err
}

// Error is a configuration error at a place in the file.
type Error struct {
	Path string
	Line int    // 0 when not known
	Key  string // the setting, as a path: ensembles[1].breaker.window
	Msg  string
}

func (e *Error) Error() string {
	where := e.Path
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", where, e.Msg)
}

// Load reads and checks a file.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	return Parse(path, data)
}

// Parse reads and checks a file's bytes; path is for messages.
func Parse(path string, data []byte) (File, error) {
	// First pass: the structure, refusing unknown keys and bad values, with yaml's own
	// line numbers.
	var strict File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&strict); err != nil {
		return File{}, yamlError(path, err)
	}
	// Second pass: each ensemble over its defaults, keeping the nodes for line numbers.
	var root struct {
		Admin     yaml.Node   `yaml:"admin"`
		Log       yaml.Node   `yaml:"log"`
		Ensembles []yaml.Node `yaml:"ensembles"`
	}
	if err := yaml.Unmarshal(data, &root); err != nil {
		return File{}, yamlError(path, err)
	}
	f := Default()
	for _, n := range []struct {
		node *yaml.Node
		into any
	}{{&root.Admin, &f.Admin}, {&root.Log, &f.Log}} {
		if n.node.Kind != 0 {
			if err := n.node.Decode(n.into); err != nil {
				return File{}, yamlError(path, err)
			}
		}
	}
	for i := range root.Ensembles {
		e := DefaultEnsemble()
		e.Name = ""
		if err := root.Ensembles[i].Decode(&e); err != nil {
			return File{}, yamlError(path, err)
		}
		f.Ensembles = append(f.Ensembles, e)
	}
	if len(f.Ensembles) == 0 {
		return File{}, &Error{Path: path, Key: "ensembles", Msg: "no ensemble: list at least one, with name, listen and members"}
	}
	if err := f.Validate(); err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			ve.Path = path
			ve.Line = lineOf(root.Ensembles, ve.Key)
		}
		return File{}, err
	}
	return f, nil
}

// Validate checks settings that yaml cannot: required keys, addresses, ranges, and
// listeners or names used twice.
func (f *File) Validate() error {
	if f.Admin.Listen != "" && !f.Admin.AllowPublic && !isLoopback(f.Admin.Listen) {
		return &Error{Key: "admin.listen", Msg: fmt.Sprintf("%s is not a loopback address; set admin.allow_public (or --admin-allow-public) to expose it", f.Admin.Listen)}
	}
	if _, _, err := net.SplitHostPort(f.Admin.Listen); f.Admin.Listen != "" && err != nil {
		return &Error{Key: "admin.listen", Msg: err.Error()}
	}
	names, listens := map[string]int{}, map[string]int{}
	for i := range f.Ensembles {
		e := &f.Ensembles[i]
		key := func(k string) string { return fmt.Sprintf("ensembles[%d].%s", i, k) }
		bad := func(k, format string, args ...any) error {
			return &Error{Key: key(k), Msg: fmt.Sprintf(format, args...)}
		}
		switch {
		case e.Name == "":
			return bad("name", "required")
		case e.Listen == "" && e.TLS.Listen == "":
			return bad("listen", "required (host:port), or tls.listen")
		case len(e.Members) == 0:
			return bad("members", "required: at least one host:port")
		}
		if j, dup := names[e.Name]; dup {
			return bad("name", "%q is also the name of ensembles[%d]", e.Name, j)
		}
		names[e.Name] = i
		for k, addr := range map[string]string{"listen": e.Listen, "tls.listen": e.TLS.Listen} {
			if addr == "" {
				continue
			}
			if j, dup := listens[addr]; dup {
				return bad(k, "%s is also a listener of ensembles[%d]", addr, j)
			}
			listens[addr] = i
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return bad(k, "%v", err)
			}
		}
		if err := e.TLS.validate(); err != nil {
			return bad("tls", "%v", err)
		}
		if m := e.MemberTLS; m.Enabled && (m.Cert == "") != (m.Key == "") {
			return bad("member_tls", "cert and key go together")
		}
		for k, m := range e.Members {
			if _, port, err := net.SplitHostPort(m); err != nil || port == "" {
				return bad(fmt.Sprintf("members[%d]", k), "%q: want host:port", m)
			}
		}
		if !contains(Policies, e.Routing) {
			return bad("routing", "%q: want one of %s", e.Routing, strings.Join(Policies, ", "))
		}
		if e.Limits.MaxConnections < 0 || e.Limits.MaxConnectionsPerClient < 0 {
			return bad("limits", "connection limits cannot be negative")
		}
		if h := e.Hotspots; h.Enabled && (h.PathDepth < 1 || h.Capacity < 10 || h.Window < time.Second) {
			return bad("hotspots", "path_depth must be at least 1, capacity at least 10 and window at least 1s")
		}
		if l := e.Limits; l.ClientRate < 0 || l.ClientBurst < 0 || l.SessionRate < 0 || l.SessionBurst < 0 || l.MaxInFlightSession < 0 {
			return bad("limits", "client_rate, client_burst, session_rate, session_burst and max_in_flight_per_session cannot be negative (0 is off)")
		}
		if e.Limits.MaxFrame < 1024 {
			return bad("limits.max_frame", "%d: want at least 1024 bytes", e.Limits.MaxFrame)
		}
		if e.Limits.HandshakeTimeout <= 0 || e.Limits.DrainTimeout <= 0 {
			return bad("limits", "handshake_timeout and drain_timeout must be positive")
		}
		if e.Relay.Coalesce < 0 || e.Relay.Coalesce > 100*time.Millisecond {
			return bad("relay.coalesce", "%v: want 0 (off) to 100ms", e.Relay.Coalesce)
		}
		if e.Relay.CoalesceShare <= 0 || e.Relay.CoalesceShare > 1 {
			return bad("relay.coalesce_share", "%v: want more than 0, at most 1", e.Relay.CoalesceShare)
		}
		if e.Relay.MoveTimeout < 0 {
			return bad("relay.move_timeout", "%v: want 0 (a third of the session timeout) or more", e.Relay.MoveTimeout)
		}
		if d := e.Relay.Driver; d != "" && d != "epoll" && d != "goroutines" {
			return bad("relay.driver", "%q: want epoll or goroutines", d)
		}
		if e.Health.Interval <= 0 || e.Health.Timeout <= 0 || e.Health.Rise < 1 || e.Health.Fall < 1 {
			return bad("health", "interval and timeout must be positive, rise and fall at least 1")
		}
		if e.Breaker.Enabled {
			if err := e.Breaker.Config().Validate(); err != nil {
				return bad("breaker", "%v", err)
			}
		}
		if e.Ejection.Enabled {
			if err := e.Ejection.Config().Validate(); err != nil {
				return bad("ejection", "%v", err)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isLoopback reports whether a listen address is on loopback.
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

// yamlError turns yaml's errors ("yaml: line 7: ...", "yaml: unmarshal errors:\n  line 7:
// field x not found in type config.Ensemble") into one message with the file and line.
func yamlError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	if strings.Contains(msg, "not found in type") {
		field := strings.TrimPrefix(strings.SplitN(msg, " not found", 2)[0], "field ")
		msg = fmt.Sprintf("unknown key %q", field)
	}
	return &Error{Path: path, Line: line, Msg: msg}
}

// lineOf finds the line of a key like "ensembles[2].breaker.window" in the ensemble nodes.
func lineOf(ensembles []yaml.Node, key string) int {
	rest, ok := strings.CutPrefix(key, "ensembles[")
	if !ok {
		return 0
	}
	idx, rest, ok := strings.Cut(rest, "].")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i >= len(ensembles) {
		return 0
	}
	node := &ensembles[i]
	line := node.Line
	for _, part := range strings.Split(rest, ".") {
		part, _, _ = strings.Cut(part, "[")
		found := false
		if node.Kind == yaml.MappingNode {
			for k := 0; k+1 < len(node.Content); k += 2 {
				if node.Content[k].Value == part {
					line, node, found = node.Content[k].Line, node.Content[k+1], true
					break
				}
			}
		}
		if !found {
			break
		}
	}
	return line
}
