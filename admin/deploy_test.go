package admin

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// captured is a Registerer that keeps what is registered, so that a test can ask each
// collector to describe itself (a Registry gathers only families with samples).
type captured struct{ cs []prometheus.Collector }

func (c *captured) Register(col prometheus.Collector) error { c.cs = append(c.cs, col); return nil }
func (c *captured) MustRegister(cs ...prometheus.Collector) { c.cs = append(c.cs, cs...) }
func (c *captured) Unregister(prometheus.Collector) bool    { return false }

// exported lists every metric family zkgate can export.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := &captured{}
	NewMetrics(reg, "test")
	reg.MustRegister(NewStateCollector(nil))
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for _, c := range reg.cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d metric families described: %v", len(names), names)
	}
	return names
}

// Every metric the alert rules and the Grafana dashboard in deploy/ query is one zkgate
// exports (a renamed metric breaks them silently otherwise); the dashboard is valid JSON;
// promtool accepts the rules (required under CI=true, where .ci/run installs it).
func TestDeployQueriesExportedMetrics(t *testing.T) {
	names := exported(t)
	metric := regexp.MustCompile(`zkgate_[a-z_]+`)
	for _, file := range []string{"prometheus/zkgate-alerts.yml", "grafana/zkgate.json"} {
		path := filepath.Join("..", "deploy", file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		used := metric.FindAllString(string(data), -1)
		if len(used) < 5 {
			t.Fatalf("%s queries %d zkgate metrics", file, len(used))
		}
		for _, m := range used {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && names[b] {
					base = b
				}
			}
			if !names[base] {
				t.Errorf("%s queries %s, which zkgate does not export", file, m)
			}
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, _ := os.ReadFile(filepath.Join("..", "deploy", "grafana", "zkgate.json"))
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 || p.Targets[0].Expr == "" {
			t.Errorf("panel %q has no query", p.Title)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool missing (apt-get install prometheus)")
		}
		t.Skip("promtool missing (apt-get install prometheus); CI=true makes this a failure")
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join("..", "deploy", "prometheus", "zkgate-alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
