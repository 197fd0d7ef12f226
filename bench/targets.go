//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// measure is one run against one target.
type measure struct {
	res                 Result
	cpuPerOp            float64 // µs of the proxy's CPU per operation
	userPerOp, sysPerOp float64 // its two parts: utime and stime
	rssMiB              float64
	clientPerOp         float64 // µs of the load generator's CPU (this process) per operation
}

// target is where the load goes, and the proxy process to watch (none for direct).
type target struct {
	name  string
	addrs []string
	cmd   *exec.Cmd
	tls   *tls.Config // the sessions speak TLS to it
	admin string      // zkgate's admin address, with /debug/pprof/ (-profile)
}

// measure runs l against t and reads the proxy's CPU and RSS around the load alone (the
// sessions open before it and close after it). With profile set (a file name), it also
// writes a CPU profile of the proxy taken over the load, less a margin at each end.
func (t *target) measure(ctx context.Context, l Load, profile string) (measure, error) {
	var before, after, clientBefore, clientAfter procStat
	var profErr chan error
	started := func() {
		clientBefore = readProc(os.Getpid())
		if t.cmd != nil {
			before = readProc(t.cmd.Process.Pid)
		}
		if profile != "" && t.admin != "" {
			profErr = make(chan error, 1)
			go func() { profErr <- fetchProfile(ctx, t.admin, l.Duration, profile) }()
		}
	}
	stopped := func() {
		clientAfter = readProc(os.Getpid())
		if t.cmd != nil {
			after = readProc(t.cmd.Process.Pid)
		}
	}
	res, err := l.Run(ctx, started, stopped)
	if profErr != nil {
		if perr := <-profErr; perr != nil && err == nil {
			err = fmt.Errorf("profile of %s: %w", t.name, perr)
		}
	}
	if err != nil {
		return measure{}, err
	}
	m := measure{res: res}
	if res.Ops > 0 {
		m.clientPerOp = float64((clientAfter.cpu - clientBefore.cpu).Microseconds()) / float64(res.Ops)
	}
	if t.cmd != nil {
		if res.Ops > 0 {
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(res.Ops) }
			m.cpuPerOp, m.userPerOp, m.sysPerOp = per(after.cpu-before.cpu), per(after.user-before.user), per(after.sys-before.sys)
		}
		m.rssMiB = float64(after.rss) / (1 << 20)
	}
	return m, nil
}

// profileMargin is left out of a profile at the start of the load and at its end
// (requests in flight finishing).
const profileMargin = 500 * time.Millisecond

// fetchProfile asks admin's /debug/pprof/profile for the run's steady part and writes
// it to path.
func fetchProfile(ctx context.Context, admin string, run time.Duration, path string) error {
	secs := max(1, int((run-2*profileMargin)/time.Second))
	select { // skip the sessions' connecting
	case <-time.After(profileMargin):
	case <-ctx.Done():
		return ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileTop is the head of `go tool pprof -top` of a profile.
func profileTop(path string, lines int) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", lines), path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof -top %s: %v\n%s", path, err, out)
	}
	return string(out)
}

func (t *target) stop() {
	if t.cmd != nil && t.cmd.Process != nil {
		t.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { t.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.cmd.Process.Kill()
		}
	}
}

func freeAddr() (string, error) {
	ports, err := zktest.FreePorts(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}

// goBuild builds the package pkg into bin, with the go command's output on stderr.
func goBuild(bin, pkg, what string) error {
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building %s (run from the repository root): %w", what, err)
	}
	return nil
}

// startZkgate builds zkgate (once) and runs it as its own process, so /proc shows its CPU
// alone. extra flags follow -zkgate-flags.
func startZkgate(dir string, members []string, name string, extra ...string) (*target, error) {
	bin := filepath.Join(dir, "zkgate")
	if _, err := os.Stat(bin); err != nil {
		if err := goBuild(bin, "./cmd/zkgate", "zkgate"); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin := ""
	if profileDir != "" || adminAlways {
		if admin, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	args := []string{"serve", "--name", "bench", "--listen", addr, "--ensemble", strings.Join(members, ","),
		"--admin", admin, "--log-level", "warn", "--log-format", "json"}
	if admin != "" {
		args = append(args, "--pprof")
	}
	args = append(append(args, strings.Fields(zkgateFlags)...), extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if zkgateProcs != "" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+zkgateProcs)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{name: name, addrs: []string{addr}, cmd: cmd, admin: admin}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, _ := zktest.FourLetter(addr, "ruok", time.Second); out == "imok" {
			return t, nil
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, errors.New("zkgate did not answer imok within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startZkgateTLS is zkgate with a TLS listener (its sessions on the goroutine driver),
// the load on that listener.
func startZkgateTLS(dir string, members []string, cert *benchCert) (*target, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	t, err := startZkgate(dir, members, "zkgate-tls", "--tls-listen", addr, "--tls-cert", cert.cert, "--tls-key", cert.key)
	if err != nil {
		return nil, err
	}
	t.addrs, t.tls = []string{addr}, cert.client
	return t, nil
}

// startFloor builds and runs the floor relay (bench/floor): zkgate's sockets and epoll
// batching with nothing done to the bytes, round-robin over the members.
func startFloor(dir string, members []string) (*target, error) {
	bin := filepath.Join(dir, "floor")
	if err := goBuild(bin, "./bench/floor", "the floor relay"); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-listen", addr, "-members", strings.Join(members, ","))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if zkgateProcs != "" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+zkgateProcs)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{name: "floor", addrs: []string{addr}, cmd: cmd}
	return relaying(t, addr, nil, "the floor relay")
}

// startHAProxy runs Debian's haproxy in TCP mode, leastconn over the same members; with
// cert, it terminates TLS from the clients (bind ... ssl crt) and talks plain to members.
func startHAProxy(dir string, members []string, cert *benchCert) (*target, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: haproxy missing; installing it (apt-get install haproxy)")
		install := exec.Command("sh", "-c", "apt-get install -y -qq haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)")
		install.Stdout, install.Stderr = os.Stderr, os.Stderr
		if err := install.Run(); err != nil {
			return nil, fmt.Errorf("installing haproxy: %w", err)
		}
		if bin, err = exec.LookPath("haproxy"); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	maxconn := max(1000, (int(lim.Cur)-200)/2) // two descriptors per proxied connection
	fmt.Fprintf(&cfg, "global\n  maxconn %d\n  nbthread %d\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\n", maxconn, runtime.NumCPU())
	name, bind, clientTLS := "haproxy", addr, (*tls.Config)(nil)
	if cert != nil {
		name, bind, clientTLS = "haproxy-tls", addr+" ssl crt "+cert.both, cert.client
	}
	fmt.Fprintf(&cfg, "listen zookeeper\n  bind %s\n  balance leastconn\n", bind)
	check := ""
	if haproxyCheck {
		// What zkgate's health asks: srvr, every 500 ms, a member down after 2 misses.
		cfg.WriteString("  option tcp-check\n  tcp-check send srvr\\n\n  tcp-check expect rstring Mode:\\ (leader|follower|standalone|observer)\n")
		check = " check inter 500ms fall 2 rise 1"
	}
	for i, m := range members {
		fmt.Fprintf(&cfg, "  server zk%d %s%s\n", i+1, m, check)
	}
	path := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-f", path, "-db")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{name: name, addrs: []string{addr}, cmd: cmd, tls: clientTLS}
	return relaying(t, addr, clientTLS, "haproxy")
}

// relaying waits until the target at addr relays a session (a ConnectRequest answered),
// for 10 s at most; past that it stops the target.
func relaying(t *target, addr string, cfg *tls.Config, what string) (*target, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _, err := handshake(addr, 10*time.Second, cfg); err == nil {
			c.Close()
			return t, nil
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("%s did not relay a session within 10 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// handshake opens a raw session.
func handshake(addr string, timeout time.Duration, cfg *tls.Config) (net.Conn, *jute.FrameReader, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if cfg != nil {
		c = tls.Client(c, cfg)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: int32(timeout.Milliseconds()), Passwd: make([]byte, 16)})); err != nil {
		c.Close()
		return nil, nil, err
	}
	fr := jute.NewFrameReaderSize(c, 0, 16<<10)
	frame, err := fr.Next()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(frame[4:], &resp); err != nil || resp.SessionID == 0 {
		c.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %+v %v", addr, resp, err)
	}
	c.SetDeadline(time.Time{})
	return c, fr, nil
}
