// Package kubernetes holds zkgate's Kubernetes manifests and the test that decodes them
// strictly against the API types. It is a module of its own, so that zkgate's go.mod does
// not carry k8s.io/api; the root module's ./... does not descend into it, and .ci/run runs
// it explicitly (cd deploy/kubernetes && go test ./...).
package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// newObject returns the API type for a manifest's apiVersion and kind.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "monitoring.coreos.com/v1 PodMonitor":
		return &monitoringv1.PodMonitor{}, true
	}
	return nil, false
}

// decodeStrict decodes one YAML document into its API type as the API server does: an
// unknown field (names are case-sensitive: Go's encoding/json would take "targetport" for
// targetPort), a duplicated field, a wrong type or an unknown kind is an error.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, ok := newObject(tm.APIVersion, tm.Kind)
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a type this test knows", tm.APIVersion, tm.Kind)
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err = errors.Join(append(strict, err)...); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// documents splits a file into its YAML documents, dropping those with nothing but comments.
func documents(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---")) {
		for _, line := range strings.Split(string(d), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

type manifests struct {
	deploy     *appsv1.Deployment
	service    *corev1.Service
	config     *corev1.ConfigMap
	pdb        *policyv1.PodDisruptionBudget
	podMonitor *monitoringv1.PodMonitor
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(b) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deploy = o
			case *corev1.Service:
				m.service = o
			case *corev1.ConfigMap:
				m.config = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			case *monitoringv1.PodMonitor:
				m.podMonitor = o
			}
		}
	}
	if m.deploy == nil || m.service == nil || m.config == nil || m.pdb == nil || m.podMonitor == nil {
		t.Fatalf("want a Deployment, a Service, a ConfigMap, a PodDisruptionBudget and a PodMonitor; got %+v", m)
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) { load(t) }

// The strict decoder is what catches a misspelt field; this shows that it does.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 3\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 2181, targetport: client}]\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ClusterIP\n  type: NodePort\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec:\n  podMetricEndpoints: []\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("decoded without an error:\n%s", doc)
		}
	}
}

func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("deployment has no container %q", name)
	return corev1.Container{}
}

// TestWiring checks what strict decoding cannot: that the pieces refer to each other.
func TestWiring(t *testing.T) {
	m := load(t)
	pod := m.deploy.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(m.deploy.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector %v does not match its pods' labels %v (%v)", m.deploy.Spec.Selector, pod.Labels, err)
	}
	if !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not match the pods' labels %v", m.service.Spec.Selector, pod.Labels)
	}
	for what, s := range map[string]*metav1.LabelSelector{"PodDisruptionBudget": m.pdb.Spec.Selector, "PodMonitor": &m.podMonitor.Spec.Selector} {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("the %s's selector %v does not match the pods' labels %v (%v)", what, s, pod.Labels, err)
		}
	}

	zk := container(t, m.deploy, "zkgate")
	ports := map[string]int32{}
	for _, p := range zk.Ports {
		ports[p.Name] = p.ContainerPort
	}
	cfg := zkgateConfig(t, m.config)
	if want := portOf(t, cfg.Admin.Listen); ports["admin"] != want {
		t.Errorf("container port admin is %d, the configuration's admin.listen %s", ports["admin"], cfg.Admin.Listen)
	}
	if want := portOf(t, cfg.Ensembles[0].Listen); ports["client"] != want {
		t.Errorf("container port client is %d, the configuration's listen %s", ports["client"], cfg.Ensembles[0].Listen)
	}
	for _, p := range m.service.Spec.Ports {
		if _, ok := ports[p.TargetPort.StrVal]; !ok {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	for _, e := range m.podMonitor.Spec.PodMetricsEndpoints {
		if e.Port == nil || ports[*e.Port] == 0 {
			t.Errorf("PodMonitor endpoint port %v is not a container port", e.Port)
		}
	}

	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "admin" {
			t.Errorf("%s probe: want GET %s on the admin port, got %+v", what, path, p)
		}
	}
	probe("readiness", zk.ReadinessProbe, "/readyz")
	probe("liveness", zk.LivenessProbe, "/healthz")

	// The pod's grace period covers the preStop pause, zkgate's drain and closing.
	if zk.Lifecycle == nil || zk.Lifecycle.PreStop == nil || zk.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("the zkgate container has no preStop sleep")
	}
	pause := time.Duration(zk.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	drain := 10 * time.Second // proxy.DefaultDrainTimeout
	if d := cfg.Ensembles[0].Limits.DrainTimeout; d != "" {
		if drain, err = time.ParseDuration(d); err != nil {
			t.Fatalf("drain_timeout %q: %v", d, err)
		}
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace < pause+drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: want at least the preStop pause %v + drain_timeout %v + 5 s to close", grace, pause, drain)
	}

	if zk.Resources.Requests.Memory().IsZero() || zk.Resources.Requests.Cpu().IsZero() || zk.Resources.Limits.Memory().IsZero() {
		t.Errorf("the zkgate container wants CPU and memory requests and a memory limit: %+v", zk.Resources)
	}

	// Reload on change needs the whole ConfigMap mounted as a directory: a subPath mount
	// is never updated.
	reloader := container(t, m.deploy, "config-reloader")
	for _, c := range []corev1.Container{zk, reloader} {
		found := false
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == "/etc/zkgate" {
				found = true
				if vm.SubPath != "" {
					t.Errorf("container %s mounts the configuration with subPath: it would never see a change", c.Name)
				}
			}
		}
		if !found {
			t.Errorf("container %s does not mount the configuration at /etc/zkgate", c.Name)
		}
	}
	if script := strings.Join(reloader.Command, " "); !strings.Contains(script, fmt.Sprintf("127.0.0.1:%d/-/reload", ports["admin"])) {
		t.Errorf("config-reloader does not POST to zkgate's admin port %d: %s", ports["admin"], script)
	}
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == m.config.Name
	}) {
		t.Errorf("no volume mounts the ConfigMap %s", m.config.Name)
	}
	if !slices.Contains(zk.Args, "/etc/zkgate/zkgate.yaml") {
		t.Errorf("zkgate is not started with /etc/zkgate/zkgate.yaml: %v", zk.Args)
	}
}

// zkgateFile is the part of zkgate's configuration the wiring test reads; zkgate itself
// validates the whole file in TestConfigMapValidates.
type zkgateFile struct {
	Admin struct {
		Listen string `json:"listen"`
	} `json:"admin"`
	Ensembles []struct {
		Listen string `json:"listen"`
		Limits struct {
			DrainTimeout string `json:"drain_timeout"`
		} `json:"limits"`
	} `json:"ensembles"`
}

func zkgateConfig(t *testing.T, cm *corev1.ConfigMap) zkgateFile {
	t.Helper()
	var f zkgateFile
	if err := yaml.Unmarshal([]byte(cm.Data["zkgate.yaml"]), &f); err != nil || len(f.Ensembles) != 1 {
		t.Fatalf("the ConfigMap's zkgate.yaml: %v (%d ensembles, want 1)", err, len(f.Ensembles))
	}
	return f
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	var port int32
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		fmt.Sscan(addr[i+1:], &port)
	}
	if port == 0 {
		t.Fatalf("no port in %q", addr)
	}
	return port
}

// TestConfigMapValidates runs `zkgate serve --check` on the ConfigMap's file: $ZKGATE names
// the binary (CI passes the packaged one), else it is built from the repository.
func TestConfigMapValidates(t *testing.T) {
	m := load(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "zkgate.yaml")
	if err := os.WriteFile(file, []byte(m.config.Data["zkgate.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := os.Getenv("ZKGATE")
	if bin == "" {
		bin = filepath.Join(dir, "zkgate")
		build := exec.Command("go", "build", "-o", bin, "./cmd/zkgate")
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/zkgate: %v\n%s", err, out)
		}
	}
	out, err := exec.Command(bin, "serve", "--config", file, "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("zkgate serve --check on the ConfigMap's zkgate.yaml: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
