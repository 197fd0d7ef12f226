//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

// ensembleConfig is every scenario's ensemble: three voters, a short tick so that elections
// are quick, and a session timeout ceiling high enough for the clients' 15 s.
func ensembleConfig(dir string) zktest.Config {
	return zktest.Config{Members: 3, TickTime: 200 * time.Millisecond, Dir: dir,
		Extra: map[string]string{"maxSessionTimeout": "60000"}}
}

// zkgateBin is the zkgate every gate of a run starts: the binary, and arguments appended
// to each gate's own (-zkgate-args), so that one build or setting can be set against another.
type zkgateBin struct {
	path string // empty: no zkgate (direct)
	args []string
}

// buildZkgate builds the binary once for every gate of the run.
func buildZkgate(dir string) (string, error) {
	bin := filepath.Join(dir, "zkgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/zkgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building zkgate (run from the repository root): %w", err)
	}
	return bin, nil
}

// gate is one zkgate process.
type gate struct {
	bin, listen, admin, log string
	args                    []string
	cmd                     *exec.Cmd
	done                    chan struct{}
}

// startGate runs zkgate in front of members, with its log in dir: extra, then bin.args.
func startGate(ctx context.Context, bin zkgateBin, dir string, n int, members []string, extra ...string) (*gate, error) {
	ports, err := zktest.FreePorts(2)
	if err != nil {
		return nil, err
	}
	g := &gate{bin: bin.path,
		listen: "127.0.0.1:" + strconv.Itoa(ports[0]),
		admin:  "127.0.0.1:" + strconv.Itoa(ports[1]),
		log:    filepath.Join(dir, fmt.Sprintf("zkgate-%d.log", n)),
	}
	g.args = append([]string{"serve", "--name", "rel", "--listen", g.listen, "--admin", g.admin,
		"--ensemble", strings.Join(members, ","), "--log-format", "json"}, extra...)
	g.args = append(g.args, bin.args...)
	return g, g.start(ctx)
}

func (g *gate) start(ctx context.Context) error {
	lf, err := os.OpenFile(g.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(g.bin, g.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	g.cmd, g.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(g.done)
	return waitUntil(ctx, 30*time.Second, "zkgate answering ruok on "+g.listen, func() bool {
		out, _ := zktest.FourLetter(g.listen, "ruok", time.Second)
		return out == "imok"
	})
}

// kill is kill -9, and waits for the process.
func (g *gate) kill() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Kill()
	<-g.done
	g.cmd = nil
}

// stop is SIGTERM (zkgate drains), then kill after 15 s.
func (g *gate) stop() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		g.cmd = nil
	case <-time.After(15 * time.Second):
		g.kill()
	}
}

// gateStatus is the part of /api/v1/status the suite reads.
type gateStatus struct {
	Ensembles []struct {
		SessionMoves       uint64 `json:"session_moves"`
		SessionMovesClosed uint64 `json:"session_moves_closed"`
		Breaker            struct {
			History []json.RawMessage `json:"history"`
		} `json:"breaker"`
		Members []struct {
			Address  string `json:"address"`
			Sessions int    `json:"sessions"`
		} `json:"members"`
	} `json:"ensembles"`
}

func (g *gate) status() (gateStatus, error) {
	var st gateStatus
	body, err := g.get("/api/v1/status")
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err == nil && len(st.Ensembles) != 1 {
		err = fmt.Errorf("status lists %d ensembles", len(st.Ensembles))
	}
	return st, err
}

// metric sums the samples of one metric on /metrics whose labels contain every filter
// ("reason=\"x\"").
func (g *gate) metric(name string, filters ...string) (float64, error) {
	body, err := g.get("/metrics")
	if err != nil {
		return 0, err
	}
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || len(line) <= len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		for _, f := range filters {
			if !strings.Contains(line, f) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func (g *gate) get(path string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// logCount counts the lines of the gate's log (every run of it) that contain s.
func (g *gate) logCount(s string) (int, error) {
	b, err := os.ReadFile(g.log)
	return strings.Count(string(b), s), err
}

// rss is the process's resident set in bytes.
func (g *gate) rss() (int64, error) {
	if g.cmd == nil {
		return 0, errors.New("zkgate not running")
	}
	return procRSS(g.cmd.Process.Pid)
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// waitUntil polls cond every 50 ms until it holds, d passes or ctx ends.
func waitUntil(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %v for %s: %w", d, what, ctx.Err())
		case <-tick.C:
		}
	}
}
