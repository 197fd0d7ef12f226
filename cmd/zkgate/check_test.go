package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/zktest"
)

// runCLI runs the CLI in-process and returns its exit code and stdout.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	code := exitCode(err)
	return code, out.String()
}

func TestCheckHealthyEnsemble(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, MaxClientCnxns: zktest.DefaultMaxClientCnxns})
	code, out := runCLI(t, "check", ens.ConnectString())
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"MEMBER", "MODE", "ZXID", "LATENCY", "CONNECTIONS", "OUTSTANDING", "VERSION", "PROBLEMS", "leader", "follower", "3.8.0", "maxClientCnxns=60", "verdict: healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, out = runCLI(t, "check", "--output", "json", ens.ConnectString())
	if code != 0 {
		t.Fatalf("json exit %d: %s", code, out)
	}
	var got struct {
		Leader  string
		Quorum  bool
		Members []struct {
			Address  string
			Mode     string
			Serving  bool
			Zxid     int64
			Problems []string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	leader, _ := ens.Leader()
	if got.Leader != leader.ClientAddr || !got.Quorum || len(got.Members) != 3 {
		t.Fatalf("%+v", got)
	}
	for i, m := range got.Members {
		if m.Address != ens.Member(i+1).ClientAddr || !m.Serving || m.Mode == "" || len(m.Problems) == 0 {
			t.Errorf("member %d: %+v", i, m)
		}
	}
}

func TestCheckDegradedAndBadArgs(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 1, Whitelist: zktest.DefaultWhitelist})
	code, out := runCLI(t, "check", ens.ConnectString()+",127.0.0.1:1")
	if code != 1 || !strings.Contains(out, "DEGRADED") || !strings.Contains(out, "connection refused") || !strings.Contains(out, "4lw whitelist refuses") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{{"check"}, {"check", "nohostport"}, {"check", "--output", "xml", ens.ConnectString()}, {"check", "--bogus", "a:1"}} {
		if code, out := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, out)
		}
	}
}

// TestMain runs the tests, or, with ZKGATE_TEST_MAIN=1, the zkgate command line itself:
// a test can start the CLI as a program (in tmux, say) without building the binary.
func TestMain(m *testing.M) {
	if os.Getenv("ZKGATE_TEST_MAIN") == "1" {
		root := newRootCmd()
		root.SetArgs(os.Args[1:])
		os.Exit(exitCode(root.Execute()))
	}
	os.Exit(m.Run())
}
