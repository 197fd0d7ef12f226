package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/internal/zktest"
)

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "ensembles:\n  - name: a\n    listen: 127.0.0.1:0\n    members: [127.0.0.1:1]\n"
	two := good + "  - name: b\n    listen: 127.0.0.1:1\n    members: [127.0.0.1:1]\n"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"serve", "--config", write("unknown.yaml", good+"    breaker:\n      open_fro: 5s\n")}, `unknown.yaml:6: unknown key "open_fro"`},
		{"bad duration", []string{"serve", "--config", write("dur.yaml", good+"    health:\n      interval: soon\n")}, "dur.yaml:6: cannot unmarshal !!str `soon` into time.Duration"},
		{"no members", []string{"serve", "--config", write("nomem.yaml", "ensembles:\n  - name: a\n    listen: 127.0.0.1:0\n")}, "nomem.yaml:2: ensembles[0].members: required"},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"no ensemble flag", []string{"serve"}, "--ensemble is required"},
		{"bad flag value", []string{"serve", "--ensemble", "127.0.0.1:1", "--breaker-reject-code", "maybe"}, "reject code"},
		{"flag on several ensembles", []string{"serve", "--config", write("two.yaml", two), "--listen", "127.0.0.1:0"}, "--listen sets one ensemble"},
		{"public admin by flag", []string{"serve", "--ensemble", "127.0.0.1:1", "--admin", "0.0.0.0:9181"}, "not a loopback address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := runCLI(t, c.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, out)
			}
			var err bytes.Buffer
			root := newRootCmd()
			root.SetOut(&err)
			root.SetErr(&err)
			root.SetArgs(c.args)
			if e := root.Execute(); e == nil || !strings.Contains(e.Error(), c.want) {
				t.Fatalf("error %v, want %q", e, c.want)
			}
		})
	}
	code, out := runCLI(t, "serve", "--config", filepath.Join("..", "..", "testdata", "zkgate.yaml"), "--check")
	if code != 0 || !strings.Contains(out, "configuration ok") || !strings.Contains(out, "ensemble batch") {
		t.Fatalf("the example config: exit %d\n%s", code, out)
	}
}

// get fetches an admin URL and returns its status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func fourLetter(t *testing.T, addr, cmd string) string {
	t.Helper()
	out, err := zktest.FourLetter(addr, cmd, 2*time.Second)
	if err != nil && err != zktest.ErrNoAnswer {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

// Everything an operator touches, against a real ensemble: metrics after real traffic
// (promlint-clean), health and readiness, the status API while a member is killed, the
// status command and page, and every four-letter word on the client port.
func TestServeOperability(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	r := serveForTest(t, ens, nil)
	client, adm := r.Clients["ops"], "http://"+r.Admin

	// Real traffic: creates, reads, an application error and a watch that fires.
	c, _, err := zk.Connect([]string{client}, 4*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path := fmt.Sprintf("/ops-%d", time.Now().UnixNano())
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err = c.Create(path, []byte("v"), 0, zk.WorldACL(zk.PermAll)); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, _, w, err := c.GetW(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(path, []byte("w"), -1); err != nil {
		t.Fatal(err)
	}
	<-w
	if _, _, err := c.Get(path + "/none"); err != zk.ErrNoNode {
		t.Fatalf("want NONODE, got %v", err)
	}

	code, metrics := get(t, adm+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	promtoolCheckMetrics(t, metrics)
	for _, want := range []string{
		`zkgate_requests_total{ensemble="ops",op="create"} 1`,
		`zkgate_responses_total{ensemble="ops",op="getData"} 2`,
		`zkgate_error_responses_total{code="NONODE",ensemble="ops"} 1`,
		`zkgate_request_duration_seconds_bucket{ensemble="ops",op="setData",le="+Inf"} 1`,
		`zkgate_watch_events_total{ensemble="ops",type="NodeDataChanged"} 1`,
		`zkgate_client_connections{ensemble="ops"} 1`,
		`zkgate_breaker_state{ensemble="ops",state="closed"} 1`,
		`zkgate_member_up{ensemble="ops",member="` + ens.Addrs()[0] + `"} 1`,
		`zkgate_member_role{ensemble="ops",member=`,
		`zkgate_member_ejected{ensemble="ops",member=`,
		`zkgate_received_bytes_total{ensemble="ops"}`,
		`zkgate_sent_bytes_total{ensemble="ops"}`,
		`zkgate_relay_coalesce_waits_total{ensemble="ops"}`,
		`zkgate_relay_coalesce_seconds_total{ensemble="ops"}`,
		`zkgate_decode_errors_total{ensemble="ops"} 0`,
		`zkgate_build_info{`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !regexp.MustCompile(`zkgate_sessions\{ensemble="ops",member="[^"]+"\} 1`).MatchString(metrics) {
		t.Errorf("/metrics lacks the session count by member")
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "zkgate_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	if code, _ := get(t, adm+"/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, adm+"/readyz"); code != 200 {
		t.Errorf("/readyz %d %s", code, body)
	}

	// Every four-letter word on the client port.
	for cmd, wants := range map[string][]string{
		"ruok": {"imok"},
		"srvr": {"Zookeeper version: zkgate", "Mode: proxy", "Breaker: closed", "Latency min/avg/max: "},
		"stat": {"Clients:", "Mode: proxy"},
		"mntr": {"zk_version\tzkgate", "zk_server_state\tproxy", "zk_num_alive_connections\t", "zkgate_breaker_state\tclosed", "zkgate_quorum\t1"},
		"cons": {"sid=0x", "member=", "lop="},
		"isro": {"rw"},
		"conf": {"ensemble=ops", "member=" + ens.Addrs()[0], "breaker.rejectCode=operation_timeout"},
		"envi": {"Environment:", "go.version=go"},
		"dump": {"dump is not executed because it is not in the whitelist."},
		"wchs": {"wchs is not executed because it is not in the whitelist."},
	} {
		out := fourLetter(t, client, cmd)
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: want %q in\n%s", cmd, w, out)
			}
		}
	}

	// The docker-compose healthcheck: ask ruok, expect imok.
	if code, out := runCLI(t, "ask", "--expect", "imok", client, "ruok"); code != 0 || strings.TrimSpace(out) != "imok" {
		t.Errorf("ask ruok: exit %d %q", code, out)
	}
	if code, _ := runCLI(t, "ask", "--expect", "imok", client, "dump"); code != 1 {
		t.Errorf("ask dump --expect imok: exit %d, want 1", code)
	}

	// The status page and the status command.
	if code, page := get(t, adm+"/"); code != 200 || !strings.Contains(page, "ops") || !strings.Contains(page, `http-equiv="refresh"`) ||
		!strings.Contains(page, ens.Addrs()[1]) || !strings.Contains(page, "breaker") || !strings.Contains(page, "requests/s") {
		t.Errorf("status page %d:\n%s", code, page)
	}
	code, out := runCLI(t, "status", "--admin", r.Admin)
	if code != 0 || !strings.Contains(out, "ensemble ops") || !strings.Contains(out, "configuration ") || !strings.Contains(out, "MEMBER") || !strings.Contains(out, "leader") {
		t.Errorf("status: exit %d\n%s", code, out)
	}

	// A killed member (not the one the session is on) shows in the status JSON: down,
	// not serving, ejected.
	var st admin.Status
	_, body := get(t, adm+"/api/v1/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	var victim *zktest.Member
	for _, m := range ens.Followers() {
		if ms := memberStatus(st, m.ClientAddr); ms != nil && ms.Sessions == 0 {
			victim = m
		}
	}
	if victim == nil {
		t.Fatalf("every follower hosts the one session?\n%s", body)
	}
	victim.Kill()
	deadline = time.Now().Add(15 * time.Second)
	for {
		code, body := get(t, adm+"/api/v1/status")
		if code != 200 {
			t.Fatalf("/api/v1/status %d", code)
		}
		st = admin.Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		m := memberStatus(st, victim.ClientAddr)
		if m != nil && !m.Serving && m.Ejected && m.Status == "down" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed member not shown down and ejected:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	es := st.Ensembles[0]
	if es.Name != "ops" || es.Listen != client || es.Breaker.State != "closed" || !es.Ready || es.Sessions != 1 || len(es.Members) != 3 {
		t.Errorf("status: %+v", es)
	}
	for _, m := range es.Members {
		if m.Address != victim.ClientAddr && (m.Mode == "" || !m.Serving || m.Zxid == "" || m.LatencyMs <= 0) {
			t.Errorf("live member %+v", m)
		}
	}
	code, out = runCLI(t, "status", "--admin", r.Admin, "--output", "json")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Errorf("status json: exit %d\n%s", code, out)
	}
}

func memberStatus(st admin.Status, addr string) *admin.MemberStatus {
	for _, e := range st.Ensembles {
		for i := range e.Members {
			if e.Members[i].Address == addr {
				return &e.Members[i]
			}
		}
	}
	return nil
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// The demo starts a real ensemble with zkgate in front, serves a client, and on Ctrl-C
// (its context ending) stops both.
func TestDemoStartsAndStops(t *testing.T) {
	if _, err := zktest.Locate(); err != nil {
		zktest.Require(t, nil)
	}
	root := newRootCmd()
	var out zktest.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	re := regexp.MustCompile(`zkgate listening on (\S+)`)
	var client string
	deadline := time.Now().Add(60 * time.Second)
	for client == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			client = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	members := regexp.MustCompile(`ensemble ready: (\S+)`).FindStringSubmatch(out.String())
	if members == nil || !strings.Contains(out.String(), "status page: http://") {
		t.Fatalf("demo output:\n%s", out.String())
	}
	c, _, err := zk.Connect([]string{client}, 10*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if _, err = c.Create("/demo-check", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Close()
	if err != nil {
		t.Fatalf("create through the demo: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo returned %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop")
	}
	for _, m := range strings.Split(members[1], ",") {
		if conn, err := net.DialTimeout("tcp", m, time.Second); err == nil {
			conn.Close()
			t.Errorf("member %s still listening after the demo stopped", m)
		}
	}
}

// promtoolCheckMetrics lints a live /metrics with promtool (Debian's prometheus package),
// required under CI=true, where .ci/run installs it.
func promtoolCheckMetrics(t *testing.T, metrics string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool missing (apt-get install prometheus)")
		}
		t.Log("promtool missing: /metrics not linted (apt-get install prometheus)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
