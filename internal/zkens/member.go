package zkens

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Member is one ZooKeeper server process.
type Member struct {
	ID         int
	Observer   bool
	ClientAddr string // 127.0.0.1:port, what clients and four-letter words dial
	SecureAddr string // its TLS client port (Config.SecureClientPort), or ""

	peerPort, electPort int
	dir                 string
	inst                Install
	jvmFlags            []string

	mu      sync.Mutex // guards cmd, done, paused
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	paused  bool
	logFile *os.File
}

func (m *Member) cfgPath() string { return filepath.Join(m.dir, "zoo.cfg") }
func (m *Member) logPath() string { return filepath.Join(m.dir, "member.log") }

func (m *Member) port() int {
	_, p, _ := net.SplitHostPort(m.ClientAddr)
	n, _ := strconv.Atoi(p)
	return n
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("zkens: member %d already running", m.ID)
	}
	lf, err := os.OpenFile(m.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "=== zkens: starting member %d at %s ===\n", m.ID, time.Now().Format(time.RFC3339Nano))
	args := append([]string{
		"-Xms32m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.admin.enableServer=false",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"}, m.jvmFlags...)
	args = append(args, "-cp", m.inst.ClassPath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", m.cfgPath())
	cmd := exec.Command(m.inst.Java, args...)
	cmd.Dir = m.dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("zkens: start member %d: %w", m.ID, err)
	}
	done := make(chan struct{})
	m.cmd, m.done, m.paused, m.logFile = cmd, done, false, lf
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	return nil
}

// Running reports whether the member's process exists (it may be paused).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Paused reports whether the member is stopped with SIGSTOP.
func (m *Member) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// PID is the member's process id, or 0 when it is not running.
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

func (m *Member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return fmt.Errorf("zkens: member %d not running", m.ID)
	}
	return m.cmd.Process.Signal(sig)
}

// stop sends sig (after SIGCONT, so a paused JVM can act on it) and waits up to grace for
// the process to exit, then SIGKILLs it.
func (m *Member) stop(sig syscall.Signal, grace time.Duration) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	if sig != syscall.SIGKILL {
		cmd.Process.Signal(sigCont)
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
	m.mu.Lock()
	m.cmd, m.done, m.paused = nil, nil, false
	m.mu.Unlock()
}

// Kill sends SIGKILL and waits for the process to go. A no-op when not running.
func (m *Member) Kill() { m.stop(syscall.SIGKILL, 10*time.Second) }

// Stop asks the member to shut down (SIGTERM) and waits; SIGKILL after 10 s.
func (m *Member) Stop() { m.stop(syscall.SIGTERM, 10*time.Second) }

// Pause freezes the member with SIGSTOP: its sockets stay open but nothing answers. It
// returns once the kernel reports the process stopped (signal delivery is asynchronous).
func (m *Member) Pause() error {
	if err := m.signal(sigStop); err != nil {
		return err
	}
	m.mu.Lock()
	m.paused = true
	m.mu.Unlock()
	pid := m.PID()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := ProcessState(pid)
		if err != nil || st == "T" || st == "t" {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zkens: member %d not stopped 5 s after SIGSTOP (state %s)", m.ID, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Resume continues a paused member with SIGCONT.
func (m *Member) Resume() error {
	if err := m.signal(sigCont); err != nil {
		return err
	}
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
	return nil
}

// Start starts a stopped or killed member again with the same config and data.
func (m *Member) Start() error { return m.start() }

// Restart stops the member (SIGTERM) and starts it again.
func (m *Member) Restart() error {
	m.Stop()
	return m.start()
}

// ErrNoAnswer is returned by FourLetter when the member closes without a reply.
var ErrNoAnswer = errors.New("zkens: empty four-letter-word reply")

// FourLetter sends a four-letter word to addr and returns the whole reply.
func FourLetter(addr, cmd string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil && len(b) == 0 {
		return "", err
	}
	if len(b) == 0 {
		return "", ErrNoAnswer
	}
	return string(b), nil
}

// FourLetter sends cmd to this member with a 2 s deadline.
func (m *Member) FourLetter(cmd string) (string, error) {
	return FourLetter(m.ClientAddr, cmd, 2*time.Second)
}

// Mode asks srvr and returns the Mode line's value (leader, follower, observer, standalone,
// read-only), or an error when the member is not serving or does not answer.
func (m *Member) Mode() (string, error) {
	if m.Paused() {
		return "", fmt.Errorf("member %d paused", m.ID)
	}
	out, err := FourLetter(m.ClientAddr, "srvr", time.Second)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Mode: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no Mode in srvr reply: %q", strings.TrimSpace(out))
}

// LogTail returns the last n lines of the member's log.
func (m *Member) LogTail(n int) string {
	b, err := os.ReadFile(m.logPath())
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// ProcessState reads /proc/<pid>/stat's state letter (R, S, T, Z, ...); an error means the
// process does not exist.
func ProcessState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "", fmt.Errorf("zkens: odd /proc stat %q", s)
	}
	return s[i+2 : i+3], nil
}
