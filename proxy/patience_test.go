package proxy

import (
	"testing"
	"time"
)

// TestPatientAttempt: a move waits on a member's ConnectResponse until its deadline
// unless another candidate answers its sessions clearly more recently (the member is
// frozen while its peers work: try them after the dial timeout).
func TestPatientAttempt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	for _, c := range []struct {
		name string
		last map[string]time.Time
		want bool
	}{
		{"every member answering (overloaded alike)", map[string]time.Time{"a": t0, "b": t0.Add(s / 2), "c": t0.Add(s)}, true},
		{"every member silent (the whole machine stalled)", map[string]time.Time{"a": t0, "b": t0, "c": t0.Add(-s)}, true},
		{"this member silent, a peer answering", map[string]time.Time{"a": t0, "b": t0.Add(5 * s), "c": t0}, false},
		{"never answered, a peer answering", map[string]time.Time{"b": t0}, false},
		{"alone", map[string]time.Time{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cands := []string{"a", "b", "c"}
			if c.name == "alone" {
				cands = []string{"a"}
			}
			if got := patientAttempt("a", cands, func(m string) time.Time { return c.last[m] }, 2*s); got != c.want {
				t.Fatalf("patientAttempt = %v, want %v", got, c.want)
			}
		})
	}
}
