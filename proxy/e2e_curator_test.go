package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// curatorClassPath is Curator's jars: ZKGATE_CURATOR_CLASSPATH, or Debian's
// (libcurator-framework-java; their manifests name guava and slf4j-api).
func curatorClassPath() string {
	if cp := os.Getenv("ZKGATE_CURATOR_CLASSPATH"); cp != "" {
		return cp
	}
	return "/usr/share/java/curator-framework.jar:/usr/share/java/curator-client.jar"
}

// TestCuratorEnsembleTrackerThroughZkgate: the members' server lines carry their client
// addresses, and Curator's EnsembleTracker (on by default) turns what it reads from
// /zookeeper/config into its connect string. Through zkgate the addresses are cut, so
// Curator keeps zkgate's address, and the session it makes after an expiry comes through
// zkgate too.
func TestCuratorEnsembleTrackerThroughZkgate(t *testing.T) {
	curator := curatorClassPath()
	requireTool(t, exec.Command("javap", "-cp", curator, "org.apache.curator.framework.CuratorFrameworkFactory"))
	ens := zktest.Start(t, zktest.Config{Members: 3, ClientAddrInServerLines: true})

	// Without zkgate's cut the test would show something: a member's own config lists
	// every member's client address.
	direct, _ := connect(t, ens.Addrs()[0])
	raw, _, err := direct.Get("/zookeeper/config")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range ens.Addrs() {
		if !strings.Contains(string(raw), ";"+addr) {
			t.Fatalf("member config lacks client address %s:\n%s", addr, raw)
		}
	}
	direct.Close()

	g := startGate(t, ens, proxy.Config{})
	through, _ := connect(t, g.addr)
	cut, _, err := through.Get("/zookeeper/config")
	if err != nil {
		t.Fatal(err)
	}
	checkNoClientAddrs(t, "go-zookeeper through zkgate", string(cut))
	through.Close()

	classes := t.TempDir()
	cp := ens.Install().ClassPath + ":" + curator
	src := filepath.Join("..", "testdata", "clients", "curator", "CuratorEnsemble.java")
	if out, err := exec.Command("javac", "-d", classes, "-cp", cp, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	root := fmt.Sprintf("/curator-%d", time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, ens.Install().Java, "-Xshare:auto", "-XX:TieredStopAtLevel=1",
		"-cp", classes+":"+cp, "CuratorEnsemble", g.addr, root)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	waited := false
	wait := func() {
		if waited {
			return
		}
		waited = true
		stdin.Close()
		if t.Failed() {
			cmd.Process.Kill()
		}
		err := cmd.Wait()
		t.Logf("curator (%v):\n%s\n%s", err, strings.Join(lines, "\n"), logs.String())
	}
	defer wait()

	tracked := 0
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "CONFIG":
			checkNoClientAddrs(t, "Curator's getConfig", strings.ReplaceAll(rest, `\n`, "\n"))
		case "TRACKED":
			tracked++
			if want := g.addr + " members=0"; rest != want {
				t.Errorf("connect string after the tracker read the config: %q, want %q", rest, want)
			}
		case "RECONNECTED":
			f := strings.Fields(rest)
			if len(f) < 2 || f[1] != g.addr {
				t.Errorf("after the expiry: %q, want the connect string %s", rest, g.addr)
			}
			_, remote, _ := strings.Cut(rest, "remoteserver:")
			if remote, _, _ = strings.Cut(remote, " "); !strings.HasSuffix(remote, "/"+g.addr) {
				t.Errorf("the new session's handle is not connected to zkgate (%s): %s", g.addr, rest)
			}
			id, err := strconv.ParseInt(strings.TrimPrefix(f[0], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("session id in %q: %v", line, err)
			}
			zktest.WaitFor(t, 10*time.Second, "zkgate holding Curator's new session", func() bool {
				for _, s := range g.srv.Sessions() {
					if s.ID == id {
						return true
					}
				}
				return false
			})
		case "WAIT":
			io.WriteString(stdin, "go\n")
		case "FAIL":
			t.Fatalf("curator: %s", line)
		}
	}
	wait() // the JVM's log is complete
	if len(lines) == 0 || lines[len(lines)-1] != "OK" {
		t.Fatal("curator did not reach OK")
	}
	if tracked != 2 {
		t.Errorf("%d TRACKED lines, want 2 (before and after the expiry)", tracked)
	}
	if strings.Contains(cp, "slf4j-simple") && !strings.Contains(logs.String(), "New config event received") {
		t.Error("the ensemble tracker never logged the config it read")
	}
}

// checkNoClientAddrs fails unless cfg lists server lines and none carries a client
// address.
func checkNoClientAddrs(t *testing.T, who, cfg string) {
	t.Helper()
	servers := 0
	for _, line := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(line, "server.") {
			servers++
			if strings.Contains(line, ";") {
				t.Errorf("%s: client address left in %q", who, line)
			}
		}
	}
	if servers == 0 {
		t.Errorf("%s: no server lines in %q", who, cfg)
	}
}
