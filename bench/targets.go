//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
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
	res      Result
	cpuPerOp float64 // µs of the proxy's CPU per operation
	rssMiB   float64
}

// target is where the load goes, and the proxy process to watch (none for direct).
type target struct {
	name  string
	addrs []string
	cmd   *exec.Cmd
	tls   *tls.Config // the sessions speak TLS to it
}

func (t *target) measure(ctx context.Context, l Load) (measure, error) {
	var before procStat
	if t.cmd != nil {
		before = readProc(t.cmd.Process.Pid)
	}
	res, err := l.Run(ctx)
	if err != nil {
		return measure{}, err
	}
	m := measure{res: res}
	if t.cmd != nil {
		after := readProc(t.cmd.Process.Pid)
		if res.Ops > 0 {
			m.cpuPerOp = float64((after.cpu - before.cpu).Microseconds()) / float64(res.Ops)
		}
		m.rssMiB = float64(after.rss) / (1 << 20)
	}
	return m, nil
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

// startZkgate builds zkgate (once) and runs it as its own process, so /proc shows its CPU
// alone. extra flags follow -zkgate-flags.
func startZkgate(dir string, members []string, name string, extra ...string) (*target, error) {
	bin := filepath.Join(dir, "zkgate")
	if _, err := os.Stat(bin); err != nil {
		build := exec.Command("go", "build", "-o", bin, "./cmd/zkgate")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building zkgate (run from the repository root): %w", err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--name", "bench", "--listen", addr, "--ensemble", strings.Join(members, ","),
		"--admin", "", "--log-level", "warn", "--log-format", "json"}
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
	t := &target{name: name, addrs: []string{addr}, cmd: cmd}
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
	for i, m := range members {
		fmt.Fprintf(&cfg, "  server zk%d %s\n", i+1, m)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _, err := handshake(addr, 10*time.Second, clientTLS); err == nil {
			c.Close()
			return t, nil
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, errors.New("haproxy did not relay a session within 10 s")
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
