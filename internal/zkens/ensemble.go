package zkens

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes an ensemble. The zero value of each field picks a test-friendly default.
type Config struct {
	Members   int           // voting members: 1 (standalone), 3 or 5; default 3
	Observers int           // extra non-voting members (peerType=observer)
	TickTime  time.Duration // default 200ms, so sessions and elections are quick
	// Whitelist is 4lw.commands.whitelist. Empty means "*"; DefaultWhitelist leaves the key
	// out so the server's own default (srvr only) applies.
	Whitelist string
	// MaxClientCnxns per client address. 0 means unlimited (maxClientCnxns=0);
	// DefaultMaxClientCnxns leaves the key out so the server default (60) applies.
	MaxClientCnxns int
	// Extra keys appended to every member's zoo.cfg (later keys win in ZooKeeper's parser).
	Extra map[string]string
	// SecureClientPort gives every member a TLS client port too (Member.SecureAddr), on
	// the Netty connection factory; the ssl.* keys (stores, clientAuth) go in Extra.
	SecureClientPort bool
	// ClientAddrInServerLines writes each member's client address into the server lines
	// too, in the dynamic form (server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181),
	// so that every member's /zookeeper/config lists every member's client address. By
	// default the lines carry none (only clientPort), and the config lists no client
	// address at all.
	ClientAddrInServerLines bool
	// JVMFlags are added to every member's java command line, before the main class
	// (system properties such as -Dreadonlymode.enabled=true).
	JVMFlags []string
	// StartTimeout bounds Start's wait for a ready ensemble; default 60s.
	StartTimeout time.Duration
	// Dir holds member directories; default a fresh temp dir removed on Close.
	Dir string
}

const (
	// DefaultWhitelist leaves 4lw.commands.whitelist unset (server default: srvr only).
	DefaultWhitelist = "-"
	// DefaultMaxClientCnxns leaves maxClientCnxns unset (server default: 60).
	DefaultMaxClientCnxns = -1
)

func (c Config) withDefaults() Config {
	if c.Members == 0 {
		c.Members = 3
	}
	if c.TickTime == 0 {
		c.TickTime = 200 * time.Millisecond
	}
	if c.Whitelist == "" {
		c.Whitelist = "*"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	return c
}

// Ensemble is a running set of ZooKeeper members. Its methods are safe for concurrent use.
type Ensemble struct {
	cfg     Config
	inst    Install
	dir     string
	ownDir  bool
	members []*Member

	closeOnce sync.Once
}

// New writes the configs and starts every member, then waits until the ensemble is ready.
// On error every started process is already stopped. Call Close when done.
func New(cfg Config) (*Ensemble, error) {
	cfg = cfg.withDefaults()
	if cfg.Members < 1 {
		return nil, fmt.Errorf("zkens: %d members", cfg.Members)
	}
	inst, err := Locate()
	if err != nil {
		return nil, err
	}
	e := &Ensemble{cfg: cfg, inst: inst, dir: cfg.Dir}
	if e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "zktest-"); err != nil {
			return nil, err
		}
		e.ownDir = true
	}
	n := cfg.Members + cfg.Observers
	ports, err := FreePorts(4 * n)
	if err != nil {
		e.Close()
		return nil, err
	}
	for i := 0; i < n; i++ {
		e.members = append(e.members, &Member{
			ID:         i + 1,
			Observer:   i >= cfg.Members,
			ClientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4*i])),
			peerPort:   ports[4*i+1],
			electPort:  ports[4*i+2],
			dir:        filepath.Join(e.dir, fmt.Sprintf("member-%d", i+1)),
			inst:       inst,
			jvmFlags:   cfg.JVMFlags,
		})
		if cfg.SecureClientPort {
			e.members[i].SecureAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4*i+3]))
		}
	}
	for _, m := range e.members {
		if err := e.writeConfig(m); err != nil {
			e.Close()
			return nil, err
		}
	}
	for _, m := range e.members {
		if err := m.start(); err != nil {
			e.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	if err := e.WaitReady(ctx); err != nil {
		err = fmt.Errorf("%w\n%s", err, e.Logs(30))
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Ensemble) writeConfig(m *Member) error {
	if err := os.MkdirAll(filepath.Join(m.dir, "data"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m.dir, "data", "myid"), []byte(strconv.Itoa(m.ID)+"\n"), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s=%v\n", k, v) }
	kv("tickTime", e.cfg.TickTime.Milliseconds())
	kv("initLimit", 10)
	kv("syncLimit", 5)
	kv("dataDir", filepath.Join(m.dir, "data"))
	kv("clientPort", m.port())
	kv("clientPortAddress", "127.0.0.1")
	kv("admin.enableServer", false)
	if m.SecureAddr != "" {
		_, port, _ := net.SplitHostPort(m.SecureAddr)
		kv("serverCnxnFactory", "org.apache.zookeeper.server.NettyServerCnxnFactory")
		kv("secureClientPort", port)
		kv("secureClientPortAddress", "127.0.0.1")
	}
	if e.cfg.Whitelist != DefaultWhitelist {
		kv("4lw.commands.whitelist", e.cfg.Whitelist)
	}
	if e.cfg.MaxClientCnxns != DefaultMaxClientCnxns {
		kv("maxClientCnxns", e.cfg.MaxClientCnxns)
	}
	if len(e.members) > 1 {
		kv("standaloneEnabled", false)
		kv("reconfigEnabled", true)
		for _, o := range e.members {
			suffix := ""
			if o.Observer {
				suffix = ":observer"
			}
			if e.cfg.ClientAddrInServerLines {
				if suffix == "" {
					suffix = ":participant"
				}
				suffix += ";" + o.ClientAddr
			}
			kv(fmt.Sprintf("server.%d", o.ID), fmt.Sprintf("127.0.0.1:%d:%d%s", o.peerPort, o.electPort, suffix))
		}
		if m.Observer {
			kv("peerType", "observer")
		}
	}
	keys := make([]string, 0, len(e.cfg.Extra))
	for k := range e.cfg.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv(k, e.cfg.Extra[k])
	}
	return os.WriteFile(m.cfgPath(), []byte(b.String()), 0o644)
}

// Members returns every member, voting members first, in id order.
func (e *Ensemble) Members() []*Member { return append([]*Member(nil), e.members...) }

// Member returns the member with the given id (1-based).
func (e *Ensemble) Member(id int) *Member { return e.members[id-1] }

// ConnectString is the members' client addresses joined by commas, as clients take them.
func (e *Ensemble) ConnectString() string { return strings.Join(e.Addrs(), ",") }

// Addrs lists the members' client addresses.
func (e *Ensemble) Addrs() []string {
	out := make([]string, len(e.members))
	for i, m := range e.members {
		out[i] = m.ClientAddr
	}
	return out
}

// SecureAddrs lists the members' TLS client addresses (Config.SecureClientPort).
func (e *Ensemble) SecureAddrs() []string {
	out := make([]string, len(e.members))
	for i, m := range e.members {
		out[i] = m.SecureAddr
	}
	return out
}

// Install says which Java and class path the members run with, for tests that run the
// Java client (org.apache.zookeeper.ZooKeeperMain) from the same install.
func (e *Ensemble) Install() Install { return e.inst }

// Dir is the ensemble's working directory.
func (e *Ensemble) Dir() string { return e.dir }

// WaitReady waits until every running member serves (srvr shows a Mode) and, for more than
// one voting member, exactly one member leads.
func (e *Ensemble) WaitReady(ctx context.Context) error {
	return e.waitFor(ctx, "every running member serving with one leader", func() (bool, string) {
		leaders := 0
		var states []string
		for _, m := range e.members {
			if !m.Running() {
				continue
			}
			mode, err := m.Mode()
			if err != nil {
				return false, fmt.Sprintf("member %d: %v", m.ID, err)
			}
			states = append(states, fmt.Sprintf("%d=%s", m.ID, mode))
			if mode == "leader" || mode == "standalone" {
				leaders++
			}
		}
		return leaders == 1, strings.Join(states, " ")
	})
}

// WaitLeader waits until some running member other than those in not leads, and returns it.
func (e *Ensemble) WaitLeader(ctx context.Context, not ...*Member) (*Member, error) {
	var found *Member
	err := e.waitFor(ctx, "a leader", func() (bool, string) {
		var states []string
	next:
		for _, m := range e.members {
			if !m.Running() {
				continue
			}
			mode, err := m.Mode()
			states = append(states, fmt.Sprintf("%d=%s%v", m.ID, mode, errString(err)))
			if mode != "leader" && mode != "standalone" {
				continue
			}
			for _, n := range not {
				if n == m {
					continue next
				}
			}
			found = m
			return true, ""
		}
		return false, strings.Join(states, " ")
	})
	return found, err
}

// Leader returns the member that leads now, or an error if none does.
func (e *Ensemble) Leader() (*Member, error) {
	for _, m := range e.members {
		if !m.Running() {
			continue
		}
		if mode, err := m.Mode(); err == nil && (mode == "leader" || mode == "standalone") {
			return m, nil
		}
	}
	return nil, errors.New("zkens: no member leads")
}

// Followers returns the running members that follow now.
func (e *Ensemble) Followers() []*Member {
	var out []*Member
	for _, m := range e.members {
		if mode, err := m.Mode(); err == nil && mode == "follower" {
			out = append(out, m)
		}
	}
	return out
}

func (e *Ensemble) waitFor(ctx context.Context, what string, cond func() (bool, string)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("zkens: waiting for %s: %w (last: %s)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Close stops every member (SIGKILL, then waits for the process) and removes the working
// directory if Start made it. It is idempotent.
func (e *Ensemble) Close() {
	e.closeOnce.Do(func() {
		for _, m := range e.members {
			m.Kill()
		}
		if e.ownDir {
			os.RemoveAll(e.dir)
		}
	})
}

// Logs returns the tail of every member's log, for failure reports.
func (e *Ensemble) Logs(lines int) string {
	var b strings.Builder
	for _, m := range e.members {
		fmt.Fprintf(&b, "----- member %d (%s) last %d log lines -----\n%s\n", m.ID, m.ClientAddr, lines, m.LogTail(lines))
	}
	return b.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

// FreePorts reserves n distinct loopback ports by listening on :0, then releases them.
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
