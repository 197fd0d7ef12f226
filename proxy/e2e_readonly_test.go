package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// Quorum loss with members in read-only mode (readonlymode.enabled, and
// localSessionsEnabled, without which a 3.8 member in read-only mode drops every new
// client): zkgate places read-only clients on the read-only member and refuses the
// others fast; when the quorum is back, the read-only clients get back to read-write
// through zkgate. The Java shell with -r and kazoo with read_only=True each read, are
// refused a write, then write once the quorum is back. go-zookeeper cannot ask for
// read-only (its ConnectRequest has no readOnly byte): it is refused during the loss and
// gets a session after it.
func TestReadOnlyDuringQuorumLoss(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3,
		Extra:    map[string]string{"localSessionsEnabled": "true"},
		JVMFlags: []string{"-Dreadonlymode.enabled=true"}})
	root := fmt.Sprintf("/ro-%d", time.Now().UnixNano())
	direct, _ := connect(t, ens.Member(1).ClientAddr)
	if _, err := direct.Create(root, []byte("before-the-loss"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	direct.Close()
	g := startGate(t, ens, proxy.Config{})
	python := os.Getenv("ZKGATE_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	requireTool(t, exec.Command(python, "-c", "import kazoo"))

	// Two of three members go: the survivor loses its quorum and, a couple of seconds
	// later, serves read-only.
	survivor := ens.Member(1)
	for _, m := range ens.Members()[1:] {
		m.Kill()
	}
	zktest.WaitFor(t, 60*time.Second, "zkgate answers isro with ro", func() bool {
		out, err := zktest.FourLetter(g.addr, "isro", time.Second)
		return err == nil && out == "ro"
	})
	g.waitLog(t, 5*time.Second, "read-only service: no quorum")

	// A read-write client is refused at once: the connection closes without a ConnectResponse.
	start := time.Now()
	if err := rawConnect(g.addr, false); err == nil {
		t.Fatal("a read-write client got a session without a quorum")
	} else {
		t.Logf("read-write client refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if err := rawConnect(g.addr, true); err != nil {
		t.Fatalf("a read-only ConnectRequest: %v", err)
	}

	// Java: the shell with -r reads and is refused a write.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	java := startShell(t, ens.Install().JavaCLI(ctx, g.addr, "-r"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zkCli output:\n%s", java.out)
		}
	})
	zktest.WaitFor(t, 30*time.Second, "zkCli -r connected read-only", func() bool {
		return strings.Contains(java.out.String(), "state:ConnectedReadOnly")
	})
	java.run(t, "get "+root, "before-the-loss")
	java.run(t, "create "+root+"/java-ro x", "Not a read-only call")

	// kazoo: the same, then it waits for read-write.
	kz := exec.CommandContext(ctx, python, filepath.Join("..", "testdata", "clients", "kazoo_readonly.py"), g.addr, root)
	kzOut := &zktest.Buffer{}
	kz.Stdout, kz.Stderr = kzOut, kzOut
	if err := kz.Start(); err != nil {
		t.Fatal(err)
	}
	kzDone := make(chan error, 1)
	go func() { kzDone <- kz.Wait() }()
	zktest.WaitFor(t, 60*time.Second, "kazoo read and was refused a write", func() bool {
		return strings.Contains(kzOut.String(), "read-only write refused")
	})
	if n := sessionsOn(g, survivor.ClientAddr); n < 2 {
		t.Errorf("%d sessions on the read-only member, want the Java and kazoo ones", n)
	}

	// The quorum comes back.
	for _, m := range ens.Members()[1:] {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	zktest.WaitFor(t, 60*time.Second, "zkgate answers isro with rw", func() bool {
		out, err := zktest.FourLetter(g.addr, "isro", time.Second)
		return err == nil && out == "rw"
	})
	select {
	case err := <-kzDone:
		t.Logf("kazoo:\n%s", kzOut)
		if err != nil || !strings.HasSuffix(strings.TrimSpace(kzOut.String()), "OK") {
			t.Fatalf("kazoo did not get back to read-write: %v", err)
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("kazoo did not finish:\n%s", kzOut)
	}
	// The Java client finds read-write through zkgate too (it polls isro, or reconnects
	// when the read-only member restarts to join the quorum).
	zktest.WaitFor(t, 90*time.Second, "zkCli back to read-write", func() bool {
		return strings.Contains(java.out.String(), "state:SyncConnected")
	})
	java.run(t, "create "+root+"/java-rw x", "Created "+root+"/java-rw")
	for _, line := range strings.Split(java.out.String(), "\n") {
		if containsAll(line, "state:") || containsAll(line, "Session establishment") || containsAll(line, "r/w") {
			t.Logf("zkCli: %s", line)
		}
	}
	c, _ := connect(t, g.addr) // go-zookeeper gets a session again
	for _, p := range []string{"/java-rw", "/kazoo-rw"} {
		if ok, _, err := c.Exists(root + p); err != nil || !ok {
			t.Errorf("%s after the quorum came back: exists %v, %v", root+p, ok, err)
		}
	}
}

// rawConnect sends a ConnectRequest for a new session, with readOnly as given, and
// reports whether a ConnectResponse came back.
func rawConnect(addr string, readOnly bool) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := jute.ConnectRequest{TimeOut: 6000, Passwd: make([]byte, 16), ReadOnly: readOnly, HasReadOnly: true}
	if _, err := c.Write(jute.AppendFrame(nil, &req)); err != nil {
		return err
	}
	var lenb [4]byte
	if _, err := io.ReadFull(bufio.NewReader(c), lenb[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("closed without a ConnectResponse")
		}
		return err
	}
	return nil
}

// sessionsOn counts zkgate's sessions on member.
func sessionsOn(g *gate, member string) int {
	n := 0
	for _, s := range g.srv.Sessions() {
		if s.Member == member {
			n++
		}
	}
	return n
}
