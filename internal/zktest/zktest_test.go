package zktest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"go.uber.org/goleak"
)

// Cleanups (which stop the members) run after the test function, so leaks are checked
// once for the package.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestThreeMembersElectNewLeaderAfterKill(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})

	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ens.Followers()); got != 2 {
		t.Fatalf("followers = %d, want 2", got)
	}
	pid := leader.PID()
	leader.Kill()
	if leader.Running() {
		t.Fatal("killed member still running")
	}
	if alive(pid) {
		t.Fatalf("process %d still exists after Kill", pid)
	}
	next, err := ens.WaitLeader(zktest.Ctx(t, 30*time.Second), leader)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatal("the killed member is still reported leader")
	}

	// The old leader comes back as a follower of the new one.
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ens.WaitReady(zktest.Ctx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if mode, err := leader.Mode(); err != nil || mode != "follower" {
		t.Fatalf("restarted member mode = %q, %v; want follower", mode, err)
	}
}

func TestPauseResumeAndRestart(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 1})
	m := ens.Member(1)
	if mode, err := m.Mode(); err != nil || mode != "standalone" {
		t.Fatalf("mode = %q, %v", mode, err)
	}
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	// A paused JVM keeps its listening socket, so the kernel accepts but nobody answers.
	if _, err := zktest.FourLetter(m.ClientAddr, "srvr", 300*time.Millisecond); err == nil {
		t.Fatal("a paused member answered srvr")
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := ens.WaitReady(zktest.Ctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	old := m.PID()
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if m.PID() == old {
		t.Fatal("restart kept the same process")
	}
	if err := ens.WaitReady(zktest.Ctx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultWhitelistAndObserver(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Observers: 1, Whitelist: zktest.DefaultWhitelist})
	obs := ens.Member(4)
	if !obs.Observer {
		t.Fatal("member 4 should be the observer")
	}
	if mode, err := obs.Mode(); err != nil || mode != "observer" {
		t.Fatalf("observer mode = %q, %v", mode, err)
	}
	out, err := obs.FourLetter("ruok")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "is not executed because it is not in the whitelist") {
		t.Fatalf("ruok with the default whitelist answered %q", out)
	}
}

func alive(pid int) bool {
	_, err := zktest.ProcessState(pid)
	return err == nil
}
