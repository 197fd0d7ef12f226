package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/proxy"
	"go.yaml.in/yaml/v3"
)

// Validate checks settings that yaml cannot: required keys, addresses, ranges, and
// listeners or names used twice.
func (f *File) Validate() error {
	if f.Admin.Listen != "" && !f.Admin.AllowPublic && !isLoopback(f.Admin.Listen) {
		return &Error{Key: "admin.listen", Msg: fmt.Sprintf("%s is not a loopback address; set admin.allow_public (or --admin-allow-public) to expose it", f.Admin.Listen)}
	}
	if f.Admin.Pprof && (f.Admin.Listen == "" || !isLoopback(f.Admin.Listen)) {
		return &Error{Key: "admin.pprof", Msg: fmt.Sprintf("the profiles are served on a loopback admin address only (admin.listen is %q)", f.Admin.Listen)}
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
		if u := e.Relay.UnsafeInFlight; u != proxy.UnsafeAuto && u != proxy.UnsafeConnectionLoss && u != proxy.UnsafeClose {
			return bad("relay.unsafe_in_flight", "%q: want %s, %s or %s", u, proxy.UnsafeAuto, proxy.UnsafeConnectionLoss, proxy.UnsafeClose)
		}
		if d := e.Relay.Driver; d != "" && d != "epoll" && d != "goroutines" {
			return bad("relay.driver", "%q: want epoll or goroutines", d)
		}
		if e.Health.Interval <= 0 || e.Health.Timeout <= 0 || e.Health.Rise < 1 || e.Health.Fall < 1 {
			return bad("health", "interval and timeout must be positive, rise and fall at least 1")
		}
		if e.Breaker.Enabled {
			if err := e.Breaker.Config().Validate(); err != nil {
				return bad(subKey("breaker", err), "%v", err)
			}
		}
		if e.Ejection.Enabled {
			if err := e.Ejection.Config().Validate(); err != nil {
				return bad(subKey("ejection", err), "%v", err)
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
// subKey is section.key when err starts with a key's name ("failure_ratio 2: want ..."),
// as the breaker's and ejector's checks do, so that the error's line is the key's.
func subKey(section string, err error) string {
	word, _, _ := strings.Cut(err.Error(), " ")
	if word == "" || strings.Trim(word, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return section
	}
	return section + "." + word
}

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
