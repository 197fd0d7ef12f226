package proxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// zkCli runs one command of the Java client (org.apache.zookeeper.ZooKeeperMain) against
// addr and returns its output.
func zkCli(t *testing.T, ens *zktest.Ensemble, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := ens.Install().JavaCLI(ctx, addr, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zkCli %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestJavaClientThroughZkgate(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	p := fmt.Sprintf("/java-%d", time.Now().UnixNano())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"create", p, "hello"}, "Created " + p},
		{[]string{"create", p + "/child", "c"}, "Created " + p + "/child"},
		{[]string{"get", p}, "hello"},
		{[]string{"getAllChildrenNumber", p}, "1"},
		{[]string{"whoami"}, "ip: 127.0.0.1"},
		{[]string{"addWatch", "-m", "PERSISTENT_RECURSIVE", p}, "WatchedEvent state:SyncConnected"},
		{[]string{"config"}, "server.1="},
		{[]string{"deleteall", p}, "WatchedEvent state:SyncConnected"},
	} {
		out := zkCli(t, ens, g.addr, c.args...)
		if !strings.Contains(out, c.want) {
			t.Errorf("zkCli %q: want %q in\n%s", c.args, c.want, out)
		}
	}
}

func TestCClientThroughZkgate(t *testing.T) {
	ens := zktest.Require(t, shared)
	cli := zktest.RequireCClient(t)
	g := startGate(t, ens, proxy.Config{})
	p := fmt.Sprintf("/c-%d", time.Now().UnixNano())
	run := func(command string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, "-h", g.addr, "-c", command).CombinedOutput()
		if err != nil {
			t.Fatalf("cli_mt %q: %v\n%s", command, err, out)
		}
		return string(out)
	}
	// cli_mt's create takes a path only (the rest of the line is part of the name).
	if out := run("create " + p); !strings.Contains(out, "["+p+"]: rc = 0") {
		t.Fatalf("create:\n%s", out)
	}
	if out := run("get " + p); !strings.Contains(out, p+": rc = 0") {
		t.Fatalf("get:\n%s", out)
	}
	if out := run("ls /"); !strings.Contains(out, strings.TrimPrefix(p, "/")) {
		t.Fatalf("ls:\n%s", out)
	}
	if out := run("delete " + p); !strings.Contains(out, "rc = 0") {
		t.Fatalf("delete:\n%s", out)
	}
	if out := run("get " + p); !strings.Contains(out, "rc = -101") {
		t.Fatalf("get after delete:\n%s", out)
	}
}

// runClient runs a client library's smoke script (testdata/clients) against addr and
// checks that it reached the end. probe checks the library is there first; without it the
// test skips, or fails under CI=true (.ci/run installs the libraries).
func runClient(t *testing.T, addr string, probe *exec.Cmd, tool, script string) {
	t.Helper()
	requireTool(t, probe)
	name := strings.TrimSuffix(filepath.Base(script), filepath.Ext(script))
	root := fmt.Sprintf("/%s-%d", name, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, script, addr, root).CombinedOutput()
	t.Logf("%s:\n%s", name, out)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("%s through zkgate: %v", name, err)
	}
}

// TestKazooThroughZkgate runs kazoo (Debian's python3-kazoo; ZKGATE_PYTHON names another
// python3 that has it).
func TestKazooThroughZkgate(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	python := os.Getenv("ZKGATE_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	runClient(t, g.addr, exec.Command(python, "-c", "import kazoo"), python,
		filepath.Join("..", "testdata", "clients", "kazoo_smoke.py"))
}

// TestNodeClientThroughZkgate runs node-zookeeper-client (npm ci in testdata/clients/node).
func TestNodeClientThroughZkgate(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	dir := filepath.Join("..", "testdata", "clients", "node")
	probe := exec.Command("node", "-e", "require('node-zookeeper-client')")
	probe.Dir = dir
	runClient(t, g.addr, probe, "node", filepath.Join(dir, "smoke.js"))
}
