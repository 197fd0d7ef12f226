package proxy_test

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// zkgate out of file descriptors is zkgate's trouble: its health probes and its connects
// to members fail before any packet leaves, and must neither mark a member down, nor
// eject one, nor open the breaker on "no quorum" (at a 20,000 descriptor limit under
// 9,900 sessions, all three happened). The zkgate under test runs in a child process
// whose RLIMIT_NOFILE it then exhausts; the ensemble is the parent's shared one.
func TestOwnDescriptorLimitBlamesNoMember(t *testing.T) {
	if addrs := os.Getenv("ZKGATE_FDLIMIT_MEMBERS"); addrs != "" {
		fdLimitChild(t, strings.Split(addrs, ","))
		return
	}
	ens := zktest.Require(t, shared)
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnDescriptorLimitBlamesNoMember$", "-test.v")
	cmd.Env = append(os.Environ(), "ZKGATE_FDLIMIT_MEMBERS="+strings.Join(ens.Addrs(), ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", lastLines(string(out), 8))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(len(l)-n, 0):], "\n")
}

func fdLimitChild(t *testing.T, addrs []string) {
	g := startGate(t, &zktest.Ensemble{}, proxy.Config{}, withMemberOrder(addrs))
	zktest.WaitFor(t, 10*time.Second, "every member serving", func() bool {
		v := g.mon.View()
		return v.Quorum && len(v.Members) == 3 && v.Members[0].Serving && v.Members[1].Serving && v.Members[2].Serving
	})
	req := jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)})
	placed := func() bool {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(req)
		var b [4]byte
		_, err = io.ReadFull(c, b[:])
		return err == nil
	}
	// Serving (its loops and lobby started) before the limit comes down.
	zktest.WaitFor(t, 10*time.Second, "a session through zkgate", placed)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	var held []*os.File
	release := func(n int) {
		for ; n > 0 && len(held) > 0; n-- {
			held[len(held)-1].Close()
			held = held[:len(held)-1]
		}
	}
	defer func() { release(len(held)) }()
	grab := func() {
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				return // EMFILE: every descriptor is taken
			}
			held = append(held, f)
		}
	}
	grab()
	// Probes fail for want of a socket for a while: with fall 1, one such probe counted
	// as the member's would mark it down.
	g.waitLog(t, 10*time.Second, "health probe", "its own limit")
	// A client that gets in (two descriptors freed: its own socket and zkgate's accepted
	// one) finds zkgate unable to dial any member; it is closed, and no member is blamed.
	zktest.WaitFor(t, 20*time.Second, "a placement refused for want of a descriptor", func() bool {
		release(2)
		if c, err := net.Dial("tcp", g.addr); err == nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			c.Write(req)
			io.Copy(io.Discard, c)
			c.Close()
		}
		grab()
		return strings.Contains(g.logs.String(), "placing a session")
	})
	release(len(held))
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	zktest.WaitFor(t, 10*time.Second, "a session through zkgate once descriptors are back", placed)
	for _, bad := range []string{"member ejected", `"status":"down"`, "no quorum", "consecutive connect failures"} {
		if strings.Contains(g.logs.String(), bad) {
			t.Fatalf("zkgate blamed the members for its own descriptor limit (%q):\n%s", bad, g.logs)
		}
	}
}
