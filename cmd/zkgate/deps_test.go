package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The production binary links no testing package: the demo starts its ensemble through
// internal/zkens, not the test helpers in internal/zktest.
func TestBinaryLinksNoTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/zkgate/zkgate/cmd/zkgate").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.HasSuffix(pkg, "/internal/zktest") {
			t.Errorf("zkgate links %s", pkg)
		}
	}
}
