package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/jute"
	"go.yaml.in/yaml/v3"
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
	if batch.Breaker.RejectCode != RejectCode(jute.ErrThrottledOp) || batch.Breaker.Window != 10*time.Second || batch.Routing != DefaultEnsemble().Routing {
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
		{"bad ratio", base + "    breaker:\n      failure_ratio: 2\n", "zk.yaml:6: ensembles[0].breaker.failure_ratio: failure_ratio 2"},
		{"bad reject code", base + "    breaker:\n      reject_code: nope\n", "zk.yaml:6:"},
		{"same listener twice", base + "  - name: b\n    listen: 127.0.0.1:2181\n    members: [127.0.0.1:1]\n", "zk.yaml:6: ensembles[1].listen: 127.0.0.1:2181 is also a listener of ensembles[0]"},
		{"bad routing", base + "    routing: random\n", `zk.yaml:5: ensembles[0].routing: "random"`},
		{"public admin", "admin:\n  listen: 0.0.0.0:9181\n" + base, "admin.listen: 0.0.0.0:9181 is not a loopback address"},
		{"not yaml", "ensembles: [\n", "zk.yaml:"},
		{"pprof on a public admin", "admin:\n  listen: 0.0.0.0:9181\n  allow_public: true\n  pprof: true\n" + base, "admin.pprof: the profiles are served on a loopback admin address only"},
		{"unknown unsafe_in_flight", base + "    relay:\n      unsafe_in_flight: retry\n", `ensembles[0].relay.unsafe_in_flight: "retry": want auto, connection_loss or close`},
		{"min_sessions 0", base + "    ejection:\n      min_sessions: 0\n", "ensembles[0].ejection.min_sessions: min_sessions 0: want at least 1"},
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

// The example states every key of an ensemble, so that it documents every default (and
// TestExampleLoads checks each stated value against the code's).
func TestExampleStatesEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "zkgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ens := child(child(doc.Content[0], "ensembles").Content[0])
	var missing []string
	var walk func(prefix string, typ reflect.Type, n *yaml.Node)
	walk = func(prefix string, typ reflect.Type, n *yaml.Node) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			c := child(n, key)
			switch {
			case c == nil:
				missing = append(missing, prefix+key)
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
				walk(prefix+key+".", f.Type, c)
			}
		}
	}
	walk("", reflect.TypeOf(Ensemble{}), ens)
	if len(missing) > 0 {
		t.Errorf("testdata/zkgate.yaml's first ensemble does not state %v", missing)
	}
}

// child is the value of key in mapping n (nil when absent); with no key, n itself.
func child(n *yaml.Node, key ...string) *yaml.Node {
	if len(key) == 0 {
		return n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key[0] {
			return n.Content[i+1]
		}
	}
	return nil
}

// relay.coalesce 0 in the file is off, all the way to the proxy.
func TestCoalesceZeroIsOff(t *testing.T) {
	f, err := Parse("zk.yaml", []byte("ensembles:\n  - name: a\n    listen: 127.0.0.1:2181\n    members: [127.0.0.1:1]\n    relay:\n      coalesce: 0s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := f.Ensembles[0].Proxy().Coalesce; c != 0 {
		t.Fatalf("proxy.Config.Coalesce %v, want 0 (off)", c)
	}
	if c := DefaultEnsemble().Proxy().Coalesce; c <= 0 {
		t.Fatalf("the default ensemble does not coalesce: %v", c)
	}
}
