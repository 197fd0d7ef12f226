// Package config reads zkgate's YAML file: several ensembles, each with its listener,
// members, routing, limits, health, breaker and ejection settings, plus the admin server
// and logging. Unknown keys are refused, and every error names the key and its line.
// testdata/zkgate.yaml is the commented example.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/zkgate/zkgate/breaker"
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
	// Pprof serves Go's profiles at /debug/pprof/ (off by default; loopback only, since a
	// profile shows what zkgate is doing and a CPU profile costs while it runs).
	Pprof bool `yaml:"pprof"`
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
	// Coalesce is the longest a relay loop waits before reading, so that more frames
	// travel per system call (sized by the frames' arrival rate, never for a lone
	// request); 0 turns it off.
	Coalesce time.Duration `yaml:"coalesce"`
	// CoalesceShare bounds that wait to a share of the members' average reply latency.
	CoalesceShare float64 `yaml:"coalesce_share"`
	// MoveTimeout bounds moving a session off a lost member; past it the client is closed
	// and reconnects. 0: a third of the session's negotiated timeout.
	MoveTimeout time.Duration `yaml:"move_timeout"`
	// UnsafeInFlight is what a move does with a write (or anything it cannot repeat) in
	// flight at the lost member: "connection_loss" answers it and everything behind it
	// with CONNECTIONLOSS and moves the session; "close" closes the client; "auto" (the
	// default) answers the clients that know the answer (Java, Curator, C, kazoo) and
	// closes the others (go-zookeeper, node-zookeeper-client).
	UnsafeInFlight string `yaml:"unsafe_in_flight"`
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
var Policies = []string{"least-connections", "least-connections-with-leader", "round-robin", "any", "prefer-observers"}

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
		Relay: Relay{Coalesce: p.Coalesce, CoalesceShare: p.CoalesceShare, MoveTimeout: p.MoveTimeout, Driver: p.Driver,
			UnsafeInFlight: p.UnsafeInFlight},
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
		MoveTimeout: e.Relay.MoveTimeout, Driver: e.Relay.Driver, UnsafeInFlight: e.Relay.UnsafeInFlight,
		Limits: proxy.Limits{ClientRate: e.Limits.ClientRate, ClientBurst: e.Limits.ClientBurst,
			SessionRate: e.Limits.SessionRate, SessionBurst: e.Limits.SessionBurst, MaxInFlight: e.Limits.MaxInFlightSession},
		Hotspots: proxy.Hotspots(e.Hotspots),
	}
}

// HealthConfig is the ensemble's health checking.
func (e Ensemble) HealthConfig() health.Config { return health.Config(e.Health) }

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
