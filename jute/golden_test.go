package jute_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/zkgate/zkgate/internal/wiretap"
	"github.com/zkgate/zkgate/jute"
)

// TestGoldenFrames decodes every frame captured from real clients against ZooKeeper 3.8
// (testdata/golden, see testdata/README.md) and checks that it re-encodes to the same
// bytes, then checks the files hold what the codec most needs to get right.
func TestGoldenFrames(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.frames"))
	if err != nil || len(files) < 3 {
		t.Fatalf("want golden frames of go-zookeeper, zkCli and cli_mt, found %v (%v)", files, err)
	}
	all := map[jute.OpCode]int{}
	var events, failedMultis, frames, negXidSetWatches int
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wiretap.Read(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		cov, err := wiretap.Check(got)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		frames += len(got)
		for op, n := range cov.Requests {
			all[op] += n
		}
		for _, n := range cov.Events {
			events += n
		}
		failedMultis += cov.MultiFailures
		for _, fr := range got {
			if fr.Dir == wiretap.ToServer && len(fr.Bytes) >= 12 {
				if h, err := jute.ParseRequestHeader(fr.Bytes[4:]); err == nil && h.Type == jute.OpSetWatches && h.Xid == jute.XidSetWatches {
					negXidSetWatches++
				}
			}
		}
	}
	cov := wiretap.Coverage{Requests: all}
	if missing := cov.Has(jute.OpCreate, jute.OpCreate2, jute.OpCreateContainer, jute.OpCreateTTL, jute.OpDelete,
		jute.OpExists, jute.OpGetData, jute.OpSetData, jute.OpGetACL, jute.OpSetACL, jute.OpGetChildren,
		jute.OpGetChildren2, jute.OpSync, jute.OpPing, jute.OpMulti, jute.OpAuth, jute.OpSetWatches, jute.OpAddWatch,
		jute.OpWhoAmI, jute.OpRemoveWatches, jute.OpGetEphemerals, jute.OpGetAllChildrenNumber, jute.OpReconfig,
		jute.OpCloseSession); len(missing) > 0 {
		t.Errorf("golden frames hold no %v request", missing)
	}
	if events == 0 || failedMultis == 0 || negXidSetWatches == 0 {
		t.Errorf("want watch events, a multi with a failed op and the C client's xid -8 setWatches; have %d, %d, %d",
			events, failedMultis, negXidSetWatches)
	}
	t.Logf("%d golden frames from %d files decode and re-encode byte for byte", frames, len(files))
}
