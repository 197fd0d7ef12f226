package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/jute"
)

// The commented example loads, and says what the defaults are.
func TestExampleLoads(t *testing.T) {
	f, err := Load(filepath.Join("..", "testdata", "zkgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Ensembles) != 2 {
		t.Fatalf("%d ensembles", len(f.Ensembles))
	}
	main, batch := f.Ensembles[0], f.Ensembles[1]
	want := DefaultEnsemble()
	want.Name, want.Listen, want.Members = "main", "127.0.0.1:2181", main.Members
	if main.Breaker != want.Breaker || main.Ejection != want.Ejection || main.Health != want.Health || main.Limits != want.Limits || main.Relay != want.Relay {
		t.Errorf("the example's values differ from the defaults it documents:\n%+v\n%+v", main, want)
	}
	if batch.Breaker.RejectCode != breaker.RejectCode(jute.ErrThrottledOp) || batch.Breaker.Window != 10*time.Second || batch.Routing != "least-connections" {
		t.Errorf("second ensemble: %+v", batch)
	}
	if f.Admin.Listen != "127.0.0.1:9181" || f.Log.Format != "auto" {
		t.Errorf("admin/log: %+v %+v", f.Admin, f.Log)
	}
}

func TestErrors(t *testing.T) {
	base := "ensembles:\n  - name: a\n    listen: 127.0.0.1:2181\n    members: [127.0.0.1:1]\n"
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "    breaker:\n      windw: 5s\n", `zk.yaml:6: unknown key "windw"`},
		{"unknown top key", "admn: {}\n" + base, `zk.yaml:1: unknown key "admn"`},
		{"bad duration", base + "    breaker:\n      window: 10x\n", "zk.yaml:6: cannot unmarshal !!str `10x` into time.Duration"},
		{"no members", "ensembles:\n  - name: a\n    listen: 127.0.0.1:2181\n", "zk.yaml:2: ensembles[0].members: required"},
		{"no ensembles", "admin: {}\n", "zk.yaml: ensembles: no ensemble"},
		{"bad member", base + "  - name: b\n    listen: 127.0.0.1:2182\n    members: [nope]\n", "zk.yaml:7: ensembles[1].members[0]: \"nope\": want host:port"},
		{"bad ratio", base + "    breaker:\n      failure_ratio: 2\n", "zk.yaml:5: ensembles[0].breaker: failure_ratio 2"},
		{"bad reject code", base + "    breaker:\n      reject_code: nope\n", "zk.yaml:6:"},
		{"same listener twice", base + "  - name: b\n    listen: 127.0.0.1:2181\n    members: [127.0.0.1:1]\n", "zk.yaml:6: ensembles[1].listen: 127.0.0.1:2181 is also the listener of ensembles[0]"},
		{"bad routing", base + "    routing: random\n", `zk.yaml:5: ensembles[0].routing: "random"`},
		{"public admin", "admin:\n  listen: 0.0.0.0:9181\n" + base, "admin.listen: 0.0.0.0:9181 is not a loopback address"},
		{"not yaml", "ensembles: [\n", "zk.yaml:"},
		{"coalesce too long", base + "    relay:\n      coalesce: 1s\n", "zk.yaml:6: ensembles[0].relay.coalesce: 1s: want 0 (off) to 100ms"},
		{"coalesce share 0", base + "    relay:\n      coalesce_share: 0\n", "zk.yaml:6: ensembles[0].relay.coalesce_share: 0: want more than 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("zk.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %q", err, c.want)
			}
		})
	}
}
