package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/internal/zktest"
)

// reloadConfig is the file the reload test writes: ensemble main over members, with
// failure_ratio, and, when second is set, a second ensemble on that address.
func reloadConfig(adminAddr, mainAddr string, members []string, ratio float64, second string, all []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin:\n  listen: %s\nlog:\n  level: info\n  format: json\nensembles:\n", adminAddr)
	// round-robin: sessions on every member, so that some are not on the removed one
	fmt.Fprintf(&b, "  - name: main\n    listen: %s\n    members: [%s]\n    routing: round-robin\n", mainAddr, strings.Join(members, ", "))
	fmt.Fprintf(&b, "    health: {interval: 200ms, timeout: 500ms}\n    breaker:\n      failure_ratio: %v\n", ratio)
	if second != "" {
		fmt.Fprintf(&b, "  - name: second\n    listen: %s\n    members: [%s]\n", second, strings.Join(all, ", "))
	}
	return b.String()
}

// session is one client of the load, and what happened to it.
type loadSession struct {
	c            *zk.Conn
	disconnected atomic.Int32
	ops, failed  atomic.Int64
}

// A reload under load: zkgate runs as its own process (zkgate serve --config), 20
// sessions read and write through it, and SIGHUP applies a file that removes a member,
// adds one, changes a breaker setting and adds an ensemble. Sessions on the removed
// member move off it once it has answered what they have in flight; no session notices.
// Then a broken file changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	// m[0] is a follower the reload removes, m[1] the leader, kept (health wants the
	// leader in the view), m[2] the follower the reload adds.
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	f := ens.Followers()
	m := []string{f[0].ClientAddr, leader.ClientAddr, f[1].ClientAddr}
	ports, err := zktest.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, mainAddr, secondAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	file := filepath.Join(t.TempDir(), "zkgate.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(adminAddr, mainAddr, m[:2], 0.5, "", nil))
	logs := &zktest.Buffer{}
	cmd := exec.Command(os.Args[0], "serve", "--config", file)
	cmd.Env = append(os.Environ(), "ZKGATE_TEST_MAIN=1")
	cmd.Stderr, cmd.Stdout = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("zkgate's log:\n%s", logs)
		}
	})
	status := func() admin.Status {
		var st admin.Status
		resp, err := http.Get("http://" + adminAddr + "/api/v1/status")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		return st
	}
	zktest.WaitFor(t, 30*time.Second, "zkgate serving", func() bool { st := status(); return len(st.Ensembles) == 1 && st.Ensembles[0].Ready })
	first := status().Config.Hash

	// The load: 20 sessions, each writing its own znode and reading it back.
	var sessions []*loadSession
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 20 {
		s := &loadSession{}
		c, ev, err := zk.Connect([]string{mainAddr}, 6*time.Second, zk.WithLogger(quiet{}))
		if err != nil {
			t.Fatal(err)
		}
		s.c = c
		t.Cleanup(c.Close)
		zktest.WaitFor(t, 20*time.Second, "a session", func() bool { return c.State() == zk.StateHasSession })
		go func() {
			for e := range ev {
				if e.State == zk.StateDisconnected || e.State == zk.StateExpired {
					s.disconnected.Add(1)
				}
			}
		}()
		path := fmt.Sprintf("/reload-%d-%d", time.Now().UnixNano(), i)
		if _, err := c.Create(path, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				var err error
				if n%4 == 0 {
					_, err = c.Set(path, []byte(fmt.Sprint(n)), -1)
				} else {
					_, _, err = c.Get(path)
				}
				s.ops.Add(1)
				if err != nil {
					s.failed.Add(1)
				}
			}
		}()
		sessions = append(sessions, s)
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(0) // the load runs while the test waits below, always with a deadline
	zktest.WaitFor(t, 10*time.Second, "the load running", func() bool {
		for _, s := range sessions {
			if s.ops.Load() < 5 {
				return false
			}
		}
		return true
	})
	onRemoved := map[int64]bool{}
	for _, line := range strings.Split(fourLetter(t, mainAddr, "cons"), "\n") {
		if mm := regexp.MustCompile(`sid=0x([0-9a-f]+),.*member=([^,]+),`).FindStringSubmatch(line); mm != nil && mm[2] == m[0] {
			var id int64
			fmt.Sscanf(mm[1], "%x", &id)
			onRemoved[id] = true
		}
	}

	// The reload: member 1 out, member 3 in, failure_ratio 0.6, a second ensemble; and
	// main's listen address, which needs a restart: kept, and said so.
	movedListen := fmt.Sprintf("127.0.0.1:%d", ports[3])
	write(reloadConfig(adminAddr, movedListen, []string{m[1], m[2]}, 0.6, secondAddr, m))
	start := time.Now()
	cmd.Process.Signal(syscall.SIGHUP)
	var st admin.Status
	zktest.WaitFor(t, 30*time.Second, "the new configuration in the status", func() bool {
		st = status()
		return st.Config != nil && st.Config.Hash != first && len(st.Ensembles) == 2
	})
	took := time.Since(start)
	main := st.Ensembles[0]
	var addrs []string
	for _, mem := range main.Members {
		addrs = append(addrs, mem.Address)
	}
	if strings.Join(addrs, ",") != m[1]+","+m[2] || main.Breaker.Settings.FailureRatio != 0.6 || st.Ensembles[1].Name != "second" {
		t.Fatalf("status after the reload: members %v, failure_ratio %v, ensembles %v", addrs, main.Breaker.Settings.FailureRatio, st.Ensembles)
	}
	if lr := st.Config.LastReload; lr == nil || lr.Result != "ok" || len(lr.NeedsRestart) != 1 || !strings.Contains(lr.NeedsRestart[0], "listen") {
		t.Fatalf("last reload: %+v", lr)
	}
	if main.Listen != mainAddr || !strings.Contains(logs.String(), `"needs_restart":["ensembles[main].listen`) {
		t.Errorf("the listen address: %s; the log does not say it needs a restart", main.Listen)
	}
	zktest.WaitFor(t, 20*time.Second, "no session left on the removed member", func() bool {
		return !strings.Contains(fourLetter(t, mainAddr, "cons"), "member="+m[0])
	})
	c2, _, err := zk.Connect([]string{secondAddr}, 6*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, _, err := c2.Get("/"); err != nil {
		t.Fatalf("the added ensemble: %v", err)
	}
	// Let the load run on after the reload, then count.
	var before int64
	for _, s := range sessions {
		before += s.ops.Load()
	}
	zktest.WaitFor(t, 10*time.Second, "more load after the reload", func() bool {
		var n int64
		for _, s := range sessions {
			n += s.ops.Load()
		}
		return n > before+200
	})
	unconcerned, moved := 0, 0
	for _, s := range sessions {
		d, f := s.disconnected.Load(), s.failed.Load()
		where := "elsewhere"
		if onRemoved[s.c.SessionID()] {
			// Drained off it: its requests held until the member answered those in
			// flight, then moved, with nothing in flight it could not repeat.
			moved++
			where = "on the removed member"
		} else {
			unconcerned++
		}
		if d != 0 || f != 0 {
			t.Errorf("session 0x%x (%s): %d disconnects, %d of %d operations failed", s.c.SessionID(), where, d, f, s.ops.Load())
		}
	}
	t.Logf("reload applied in %v (signal to status); %d sessions on the removed member, %d elsewhere", took.Round(time.Millisecond), moved, unconcerned)
	if moved == 0 || unconcerned == 0 {
		t.Errorf("%d sessions on the removed member, %d elsewhere: round-robin should have put some on each", moved, unconcerned)
	}

	// A broken file: zkgate keeps its configuration, and says where the file is wrong.
	write(strings.Replace(reloadConfig(adminAddr, mainAddr, []string{m[1], m[2]}, 0.6, secondAddr, m), "failure_ratio: 0.6", "failure_ratio: 2", 1))
	hash := status().Config.Hash
	cmd.Process.Signal(syscall.SIGHUP)
	zktest.WaitFor(t, 10*time.Second, "the refused reload logged", func() bool {
		return strings.Contains(logs.String(), "reload refused")
	})
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "reload refused") {
			line = l
		}
	}
	if !strings.Contains(line, file+":13: ensembles[0].breaker.failure_ratio: failure_ratio 2") {
		t.Errorf("the refusal does not name the file, line and key: %s", line)
	}
	// The status takes the refusal right after the log line: wait for it there.
	deadline := time.Now().Add(10 * time.Second)
	for st = status(); st.Config.Hash != hash || st.Config.LastReload.Result != "error" || len(st.Ensembles) != 2 || !st.Ensembles[0].Ready; st = status() {
		if time.Now().After(deadline) {
			t.Errorf("after the broken file: %+v, last reload %+v, %d ensembles, main ready %v", st.Config, st.Config.LastReload,
				len(st.Ensembles), len(st.Ensembles) > 0 && st.Ensembles[0].Ready)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := get(t, "http://"+adminAddr+"/metrics")
	for _, want := range []string{`zkgate_config_reload_total{result="error"} 1`, `zkgate_config_reload_total{result="ok"} 1`, "zkgate_config_last_reload_successful 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// POST /-/reload says the same.
	resp, err := http.Post("http://"+adminAddr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rs admin.ReloadStatus
	json.NewDecoder(resp.Body).Decode(&rs)
	resp.Body.Close()
	if resp.StatusCode != 400 || rs.Result != "error" || !strings.Contains(rs.Error, "failure_ratio") {
		t.Errorf("POST /-/reload: %d %+v", resp.StatusCode, rs)
	}
	if _, _, err := sessions[0].c.Get("/"); err != nil {
		t.Errorf("serving after the broken file: %v", err)
	}
}
