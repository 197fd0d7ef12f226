package health

import (
	"os"
	"path/filepath"
	"testing"
)

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "4lw", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseSrvrReal38(t *testing.T) {
	for _, c := range []struct{ file, mode string }{
		{"srvr-leader.txt", "leader"}, {"srvr-follower.txt", "follower"},
		{"srvr-observer.txt", "observer"}, {"srvr-standalone-default-whitelist.txt", "standalone"},
		{"stat-leader.txt", "leader"}, {"stat-follower.txt", "follower"},
	} {
		s, err := ParseSrvr(golden(t, c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if s.Mode != c.mode || s.Version != "3.8.0-${mvngit.commit.id}" || s.Zxid == 0 && c.mode == "leader" || s.NodeCount < 4 {
			t.Errorf("%s: %+v", c.file, s)
		}
	}
	if _, err := ParseSrvr(golden(t, "srvr-not-serving.txt")); err != ErrNoMode {
		t.Errorf("not-serving reply: %v", err)
	}
	s, err := ParseSrvr("Zookeeper version: 3.9.1-abc, built on 2023-10-05 10:34 UTC\nLatency min/avg/max: 1/2.5/30\nReceived: 7\nSent: 6\nConnections: 2\nOutstanding: 1\nZxid: 0x30000000a\nMode: read-only\nNode count: 9\n")
	if err != nil || s.Mode != "read-only" || s.Zxid != 0x30000000a || s.LatencyAvg != 2.5 || s.LatencyMax != 30 || s.Outstanding != 1 || s.Connections != 2 {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestParseMntrReal38(t *testing.T) {
	m, err := ParseMntr(golden(t, "mntr-leader.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if m.ServerState != "leader" || m.Learners != 3 || m.SyncedFollowers != 2 || m.AliveConnections < 1 || m.Version == "" {
		t.Errorf("leader mntr: state %q learners %d synced %d conns %d version %q", m.ServerState, m.Learners, m.SyncedFollowers, m.AliveConnections, m.Version)
	}
	f, err := ParseMntr(golden(t, "mntr-observer.txt"))
	if err != nil || f.ServerState != "observer" {
		t.Errorf("observer mntr: %q %v", f.ServerState, err)
	}
	old, err := ParseMntr("zk_version\t3.5.9-abc, built on 01/01/2021\nzk_server_state\tleader\nzk_followers\t2\nzk_synced_followers\t2\nzk_avg_latency\t0\n")
	if err != nil || old.Learners != 2 || old.Version != "3.5.9-abc" {
		t.Errorf("3.5 names: %+v %v", old, err)
	}
	if _, err := ParseMntr(golden(t, "mntr-standalone-default-whitelist.txt")); err == nil {
		t.Error("a whitelist refusal parsed as mntr")
	}
}

func TestParseConfRuokIsro(t *testing.T) {
	c := ParseConf(golden(t, "conf-leader.txt"))
	if c.MaxClientCnxns != 0 || c.TickTime.Milliseconds() != 200 || c.MinSessionTimeout.Milliseconds() != 400 || c.MaxSessionTimeout.Milliseconds() != 4000 {
		t.Errorf("%+v", c)
	}
	if ParseConf("tickTime=2000\n").MaxClientCnxns != -1 {
		t.Error("absent maxClientCnxns should read -1")
	}
	if !ParseRuok(golden(t, "ruok-leader.txt")) || ParseRuok("") {
		t.Error("ruok")
	}
	if ro, ok := ParseIsro(golden(t, "isro-follower.txt")); ro || !ok {
		t.Error("isro rw")
	}
	if _, ok := ParseIsro(golden(t, "isro-not-serving.txt")); ok {
		t.Error("isro null should not parse")
	}
}

func TestClassifyRefusals(t *testing.T) {
	for _, c := range []struct {
		out  string
		want error
	}{
		{golden(t, "srvr-not-serving.txt"), ErrNotServing},
		{golden(t, "mntr-standalone-default-whitelist.txt"), ErrNotWhitelisted},
		{"", ErrEmptyReply},
	} {
		if _, err := classify("a:1", "x", c.out); err == nil || !errorsIsT(err, c.want) {
			t.Errorf("%q: %v, want %v", c.out, err, c.want)
		}
	}
}
