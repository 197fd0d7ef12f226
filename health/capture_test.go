package health

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

var capture = flag.Bool("capture", false, "capture real four-letter-word outputs into ../testdata/4lw")

// TestCapture4lw regenerates testdata/4lw from a real ensemble (go test ./health -run
// TestCapture4lw -capture). Without -capture it does nothing.
func TestCapture4lw(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to regenerate testdata/4lw")
	}
	dir := filepath.Join("..", "testdata", "4lw")
	os.MkdirAll(dir, 0o755)
	save := func(name, out string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ens := zktest.Start(t, zktest.Config{Members: 3, Observers: 1})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	follower := ens.Followers()[0]
	for _, c := range []struct {
		m    *zktest.Member
		role string
	}{{leader, "leader"}, {follower, "follower"}, {ens.Member(4), "observer"}} {
		for _, cmd := range []string{"srvr", "stat", "mntr", "conf", "ruok", "isro"} {
			out, err := c.m.FourLetter(cmd)
			if err != nil {
				t.Fatal(err)
			}
			save(cmd+"-"+c.role+".txt", out)
		}
	}
	solo := zktest.Start(t, zktest.Config{Members: 1, Whitelist: zktest.DefaultWhitelist, MaxClientCnxns: zktest.DefaultMaxClientCnxns})
	for _, cmd := range []string{"srvr", "mntr"} {
		out, _ := solo.Member(1).FourLetter(cmd)
		save(cmd+"-standalone-default-whitelist.txt", out)
	}
	// Two of three voters gone: the survivor stops serving.
	ens.Member(4).Kill()
	for _, m := range ens.Members()[:3] {
		if m != follower {
			m.Kill()
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := follower.FourLetter("srvr")
		if err == nil && !containsMode(out) {
			save("srvr-not-serving.txt", out)
			out, _ = follower.FourLetter("mntr")
			save("mntr-not-serving.txt", out)
			out, _ = follower.FourLetter("isro")
			save("isro-not-serving.txt", out)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("survivor never stopped serving")
}

func containsMode(s string) bool {
	_, err := ParseSrvr(s)
	return err == nil
}
