package proxy_test

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

// shell is an interactive client shell (zkCli, cli_mt) fed commands on stdin; its output
// is read as it comes.
type shell struct {
	stdin io.WriteCloser
	out   *zktest.Buffer
	// what the shell prints when it loses its connection, and when a data watch fires
	disconnect []string
	fired      string
	mark       int // output before this offset was there before the move
	root       string
}

func startShell(t *testing.T, cmd *exec.Cmd) *shell {
	t.Helper()
	s := &shell{out: &zktest.Buffer{}}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	s.stdin = startPiped(t, cmd)
	return s
}

// startPiped starts cmd with a pipe to its stdin, and kills it when the test ends.
func startPiped(t *testing.T, cmd *exec.Cmd) io.WriteCloser {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return stdin
}

// run sends one command and waits for want in what the shell printed since.
func (s *shell) run(t *testing.T, command, want string) {
	t.Helper()
	from := len(s.out.String())
	io.WriteString(s.stdin, command+"\n")
	zktest.WaitFor(t, 20*time.Second, want+" after "+command, func() bool {
		return strings.Contains(s.out.String()[from:], want)
	})
}

func (s *shell) write(*testing.T) { io.WriteString(s.stdin, "set "+s.root+" w\n") }

func (s *shell) report(t *testing.T) moveReport {
	t.Helper()
	var rep moveReport
	deadline := time.Now().Add(10 * time.Second)
	for !rep.watchFired && time.Now().Before(deadline) {
		rep.watchFired = strings.Contains(s.out.String()[s.mark:], s.fired)
		time.Sleep(50 * time.Millisecond)
	}
	after := s.out.String()[s.mark:]
	for _, d := range s.disconnect {
		if strings.Contains(after, d) {
			rep.disconnects = append(rep.disconnects, d)
		}
	}
	if len(rep.disconnects) > 0 || !rep.watchFired {
		t.Logf("shell output after the move:\n%s", after)
	}
	return rep
}

// startZkCli runs the Java client's shell (ZooKeeperMain); it prints every watcher event,
// connection states included.
func startZkCli(t *testing.T, ens *zktest.Ensemble, addr, root string) movingClient {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := startShell(t, ens.Install().JavaCLI(ctx, addr))
	s.root = root
	s.disconnect = []string{"state:Disconnected", "state:Expired"}
	s.fired = "type:NodeDataChanged path:" + root
	s.run(t, "create -e "+root+"/eph e", "Created "+root+"/eph")
	s.run(t, "get -w "+root, "a")
	s.run(t, "stat "+root, "dataLength")
	s.mark = len(s.out.String())
	return s
}

// startCliMT runs the C client's shell; its watcher prints session events and data events.
func startCliMT(t *testing.T, _ *zktest.Ensemble, addr, root string) movingClient {
	cli := zktest.RequireCClient(t)
	s := startShell(t, exec.Command(cli, "-h", addr))
	s.root = root
	s.disconnect = []string{"CONNECTING_STATE", "ASSOCIATING_STATE", "EXPIRED_SESSION_STATE"}
	s.fired = "CHANGED_EVENT"
	zktest.WaitFor(t, 20*time.Second, "cli_mt connected", func() bool {
		return strings.Contains(s.out.String(), "CONNECTED_STATE")
	})
	s.run(t, "create +e "+root+"/eph", "rc = 0")
	s.run(t, "get "+root, root+": rc = 0")
	s.mark = len(s.out.String())
	return s
}
