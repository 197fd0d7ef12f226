package wiretap_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/wiretap"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"go.uber.org/goleak"
)

var golden = flag.Bool("golden", false, "write the captured frames to testdata/golden")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCaptureClients drives go-zookeeper, the Java client and the C client through a tap
// in front of a real ZooKeeper member, then checks every captured frame with the codec.
// With -golden it also rewrites testdata/golden:
//
//	go test ./internal/wiretap -run TestCaptureClients -golden
func TestCaptureClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ZooKeeper member and two client JVMs")
	}
	ens := zktest.Start(t, zktest.Config{Members: 1, Extra: map[string]string{
		"extendedTypesEnabled": "true", // createTTL
	}})
	member := ens.Addrs()[0]
	for _, c := range []struct {
		name string
		want []jute.OpCode
		run  func(t *testing.T, tap *wiretap.Tap)
	}{
		{"go-zookeeper", []jute.OpCode{jute.OpCreate, jute.OpCreateContainer, jute.OpCreateTTL,
			jute.OpDelete, jute.OpExists, jute.OpGetData, jute.OpSetData, jute.OpGetACL, jute.OpSetACL,
			jute.OpGetChildren2, jute.OpSync, jute.OpMulti, jute.OpAuth, jute.OpSetWatches, jute.OpPing,
			jute.OpCloseSession}, goClient},
		{"zkcli", []jute.OpCode{jute.OpCreate, jute.OpCreateContainer, jute.OpCreateTTL, jute.OpGetData,
			jute.OpSetData, jute.OpExists, jute.OpGetChildren, jute.OpGetChildren2, jute.OpGetACL, jute.OpSetACL,
			jute.OpSync, jute.OpWhoAmI, jute.OpAuth, jute.OpAddWatch, jute.OpGetAllChildrenNumber,
			jute.OpGetEphemerals, jute.OpRemoveWatches, jute.OpMulti, jute.OpDelete, jute.OpReconfig,
			jute.OpCloseSession}, javaClient(ens)},
		{"cli_mt", []jute.OpCode{jute.OpCreate, jute.OpCreate2, jute.OpGetData, jute.OpSetData, jute.OpExists,
			jute.OpGetChildren, jute.OpGetChildren2, jute.OpSync, jute.OpAuth, jute.OpSetWatches, jute.OpDelete,
			jute.OpCloseSession}, cClient},
	} {
		t.Run(c.name, func(t *testing.T) {
			tap, err := wiretap.Listen(member)
			if err != nil {
				t.Fatal(err)
			}
			c.run(t, tap)
			tap.Close()
			frames := tap.Frames()
			cov, err := wiretap.Check(frames)
			if err != nil {
				t.Fatal(err)
			}
			if missing := cov.Has(c.want...); len(missing) > 0 {
				t.Errorf("no %v request captured; seen %v", missing, cov.Requests)
			}
			if c.name == "go-zookeeper" && cov.MultiFailures == 0 {
				t.Errorf("no multi reply with a failed op captured")
			}
			if cov.Events[jute.EventNodeDataChanged] == 0 {
				t.Errorf("no NodeDataChanged notification captured; seen %v", cov.Events)
			}
			t.Logf("%d frames on %d connections: requests %v, errors %v, events %v, failed multis %d",
				len(frames), cov.Connects, cov.Requests, cov.Errors, cov.Events, cov.MultiFailures)
			if *golden && !t.Failed() {
				writeGolden(t, c.name, frames)
			}
		})
	}
}

func writeGolden(t *testing.T, name string, frames []wiretap.Frame) {
	var buf bytes.Buffer
	header := fmt.Sprintf("%s against ZooKeeper 3.8 (one standalone member), captured by\n"+
		"go test ./internal/wiretap -run TestCaptureClients -golden\n"+
		"<conn> <dir: > to server, < to client> <frame bytes in hex, length prefix included>", name)
	if err := wiretap.Write(&buf, header, frames); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "testdata", "golden", name+".frames")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sent reports whether the tap has seen a request with opcode op on connection conn (any
// connection when conn is 0).
func sent(tap *wiretap.Tap, conn int, op jute.OpCode) bool {
	for _, f := range tap.Frames() {
		if f.Dir != wiretap.ToServer || (conn != 0 && f.Conn != conn) || len(f.Bytes) < 12 {
			continue
		}
		if h, err := jute.ParseRequestHeader(f.Bytes[4:]); err == nil && h.Type == op {
			return true
		}
	}
	return false
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func goClient(t *testing.T, tap *wiretap.Tap) {
	c, ev, err := zk.Connect([]string{tap.Addr()}, 4*time.Second, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitSession := func() {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case e := <-ev:
				if e.State == zk.StateHasSession {
					return
				}
			case <-deadline:
				t.Fatalf("no session (state %v)", c.State())
			}
		}
	}
	waitSession()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := func(err, target error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("got %v, want %v", err, target)
		}
	}
	open := zk.WorldACL(zk.PermAll)
	_, err = c.Create("/g", []byte("root"), 0, open)
	must(err)
	_, err = c.Create("/g/seq-", []byte("s"), zk.FlagEphemeral|zk.FlagSequence, open)
	must(err)
	_, err = c.CreateProtectedEphemeralSequential("/g/prot-", []byte("p"), open)
	must(err)
	_, err = c.CreateContainer("/g/container", nil, zk.FlagContainer, open)
	must(err)
	_, err = c.CreateTTL("/g/ttl", []byte("t"), zk.FlagTTL, open, time.Minute)
	must(err)
	_, _, err = c.Get("/g")
	must(err)
	_, err = c.Set("/g", []byte("root2"), 0)
	must(err)
	_, err = c.Set("/g", []byte("x"), 42)
	want(err, zk.ErrBadVersion)
	_, _, err = c.Exists("/g/none")
	must(err)
	_, _, err = c.Get("/g/none")
	want(err, zk.ErrNoNode)
	_, _, err = c.Children("/g")
	must(err)
	_, _, err = c.GetACL("/g")
	must(err)
	_, err = c.SetACL("/g", open, 0)
	must(err)
	_, err = c.Sync("/g")
	must(err)
	must(c.AddAuth("digest", []byte("user:secret")))
	_, err = c.Create("/g/private", []byte("p"), 0, zk.DigestACL(zk.PermAll, "user", "secret"))
	must(err)
	_, err = c.Multi(&zk.CreateRequest{Path: "/g/m1", Data: []byte("1"), Acl: open}, &zk.SetDataRequest{Path: "/g", Data: []byte("m"), Version: -1},
		&zk.CheckVersionRequest{Path: "/g", Version: 99})
	want(err, zk.ErrBadVersion)
	_, err = c.Multi(&zk.CreateRequest{Path: "/g/m2", Data: []byte("2"), Acl: open}, &zk.DeleteRequest{Path: "/g/m2", Version: -1})
	must(err)
	_, _, wData, err := c.GetW("/g")
	must(err)
	_, _, wChild, err := c.ChildrenW("/g")
	must(err)
	_, _, _, err = c.ExistsW("/g/later")
	must(err)
	// Cut the connection: the client reconnects and sends its watches with setWatches.
	tap.Drop()
	zktest.WaitFor(t, 15*time.Second, "setWatches after the reconnect", func() bool { return sent(tap, 0, jute.OpSetWatches) })
	_, err = c.Set("/g", []byte("fire"), -1)
	for err != nil && errors.Is(err, zk.ErrConnectionClosed) {
		_, err = c.Set("/g", []byte("fire"), -1)
	}
	must(err)
	select {
	case e := <-wData:
		if e.Type != zk.EventNodeDataChanged {
			t.Fatalf("data watch: %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data watch set before the reconnect did not fire")
	}
	_, err = c.Create("/g/later", nil, 0, open)
	must(err)
	<-wChild
	zktest.WaitFor(t, 15*time.Second, "a ping", func() bool { return sent(tap, 0, jute.OpPing) })
	want(c.Delete("/g/later", 7), zk.ErrBadVersion)
	must(c.Delete("/g/later", -1))
	c.Close()
	zktest.WaitFor(t, 10*time.Second, "closeSession", func() bool { return sent(tap, 0, jute.OpCloseSession) })
}

func javaClient(ens *zktest.Ensemble) func(t *testing.T, tap *wiretap.Tap) {
	return func(t *testing.T, tap *wiretap.Tap) {
		script := strings.Join([]string{
			"create /j hello",
			"create -s -e /j/eph- e",
			"create -c /j/container",
			"create -t 60000 /j/ttl t",
			"get -s /j",
			"get -w /j",
			"stat /j",
			"ls /j",
			"ls -s -w /j",
			"getAcl /j",
			"setAcl /j world:anyone:cdrwa",
			"sync /j",
			"whoami",
			"addauth digest user:secret",
			"addWatch -m PERSISTENT_RECURSIVE /j",
			"getAllChildrenNumber /j",
			"getEphemerals /j",
			"config",
			"set /j changed",
			"removewatches /j",
			"reconfig -remove 9",
			"delete /j/none",
			"deleteall /j",
			"quit",
		}, "\n") + "\n"
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := ens.Install().JavaCLI(ctx, tap.Addr())
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("zkCli: %v\n%s", err, out)
		}
		for _, want := range []string{"Created /j", "hello", "ip: 127.0.0.1", "NodeDataChanged", "version="} {
			if !strings.Contains(string(out), want) {
				t.Errorf("zkCli output lacks %q:\n%s", want, out)
			}
		}
	}
}

func cClient(t *testing.T, tap *wiretap.Tap) {
	cli := zktest.RequireCClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, tap.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out zktest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("cli_mt: %v\n%s", err, out.String())
		}
	}()
	say := func(lines ...string) {
		t.Helper()
		if _, err := io.WriteString(stdin, strings.Join(lines, "\n")+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	zktest.WaitFor(t, 15*time.Second, "the C client's session", func() bool { return len(tap.Frames()) >= 2 })
	say("create /cm", "create2 /cm/two", "create +e /cm/eph", "set /cm data", "get /cm", "ls /cm", "ls2 /cm",
		"exists /cm", "wexists /cm/none", "sync /cm", "addauth digest user:secret", "delete /cm/none")
	zktest.WaitFor(t, 15*time.Second, "the C client's requests", func() bool { return sent(tap, 1, jute.OpDelete) })
	// Cut the connection: cli_mt reconnects and resends the watches of get and ls.
	tap.Drop()
	zktest.WaitFor(t, 15*time.Second, "setWatches after the reconnect", func() bool { return sent(tap, 2, jute.OpSetWatches) })
	say("set /cm fire", "delete /cm/two", "delete /cm/eph", "delete /cm")
	zktest.WaitFor(t, 15*time.Second, "the last delete", func() bool {
		return strings.Contains(out.String(), "NodeDataChanged") || strings.Count(out.String(), "rc = 0") >= 10
	})
	say("quit")
}
