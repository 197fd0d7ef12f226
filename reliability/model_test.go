//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// step is one operation of a hand-written history: client, input, call, output, return.
type step struct {
	client    int
	in        regInput
	call, ret int64
	out       regOutput
}

func check(t *testing.T, dir string, steps ...step) (porcupine.CheckResult, string) {
	t.Helper()
	h := &history{}
	for _, s := range steps {
		h.add(s.client, s.in, s.call, s.out, s.ret)
	}
	return linearizable(h.ops, 10*time.Second, dir)
}

func read(k int) regInput            { return regInput{key: k, kind: opRead} }
func write(k int, v string) regInput { return regInput{key: k, kind: opWrite, value: v} }
func cas(k int, ver int32, v string) regInput {
	return regInput{key: k, kind: opCAS, value: v, version: ver}
}
func saw(v string, ver int32) regOutput { return regOutput{value: v, version: ver} }

var unknown = regOutput{unknown: true}

// A read that returns a value older than a write that finished before the read began is a
// stale read: the check must report it, and leave the visualization behind.
func TestStaleReadIsAViolation(t *testing.T) {
	dir := t.TempDir()
	res, path := check(t, dir,
		step{0, write(0, "a"), 10, 20, saw("", 1)},
		step{1, read(0), 30, 40, saw(initValue, 0)},
	)
	if res != porcupine.Illegal {
		t.Fatalf("stale read: got %v, want %v", res, porcupine.Illegal)
	}
	if path != filepath.Join(dir, "linearizability.html") {
		t.Fatalf("visualization at %q", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("visualization not written: %v", err)
	}
}

// The same operations overlapping in time are linearizable either way round.
func TestConcurrentReadMaySeeEither(t *testing.T) {
	for _, seen := range []regOutput{saw(initValue, 0), saw("a", 1)} {
		if res, _ := check(t, "",
			step{0, write(0, "a"), 10, 40, saw("", 1)},
			step{1, read(0), 20, 30, seen},
		); res != porcupine.Ok {
			t.Fatalf("read overlapping the write saw %v: got %v, want ok", seen, res)
		}
	}
}

// A write whose outcome is unknown may take effect at any time after its call, or never;
// once a read has seen it, a later read may not go back.
func TestUnknownWrite(t *testing.T) {
	never := []step{
		{0, write(0, "a"), 10, 0, unknown},
		{1, read(0), 20, 30, saw(initValue, 0)},
		{1, read(0), 40, 50, saw(initValue, 0)},
	}
	if res, _ := check(t, "", never...); res != porcupine.Ok {
		t.Fatalf("unknown write never seen: got %v, want ok", res)
	}
	late := []step{
		{0, write(0, "a"), 10, 0, unknown},
		{1, read(0), 20, 30, saw(initValue, 0)},
		{1, read(0), 40, 50, saw("a", 1)},
	}
	if res, _ := check(t, "", late...); res != porcupine.Ok {
		t.Fatalf("unknown write seen late: got %v, want ok", res)
	}
	back := []step{
		{0, write(0, "a"), 10, 0, unknown},
		{1, read(0), 20, 30, saw("a", 1)},
		{1, read(0), 40, 50, saw(initValue, 0)},
	}
	if res, _ := check(t, "", back...); res != porcupine.Illegal {
		t.Fatalf("read went back past an unknown write: got %v, want illegal", res)
	}
}

// A compare-and-set on a stale version fails with BADVERSION; on the current one it must
// succeed, and a BADVERSION there is a violation.
func TestCompareAndSet(t *testing.T) {
	bad := regOutput{failed: true}
	if res, _ := check(t, "",
		step{0, write(0, "a"), 10, 20, saw("", 1)},
		step{1, cas(0, 0, "b"), 30, 40, bad},
		step{1, cas(0, 1, "c"), 50, 60, saw("", 2)},
		step{0, read(0), 70, 80, saw("c", 2)},
	); res != porcupine.Ok {
		t.Fatalf("valid cas history: got %v, want ok", res)
	}
	if res, _ := check(t, "",
		step{0, write(0, "a"), 10, 20, saw("", 1)},
		step{1, cas(0, 1, "b"), 30, 40, bad},
	); res != porcupine.Illegal {
		t.Fatalf("BADVERSION on the current version: got %v, want illegal", res)
	}
	if res, _ := check(t, "",
		step{0, write(0, "a"), 10, 20, saw("", 1)},
		step{1, cas(0, 0, "b"), 30, 40, saw("", 2)},
	); res != porcupine.Illegal {
		t.Fatalf("cas succeeded on a stale version: got %v, want illegal", res)
	}
}

// Registers are checked apart: a stale read of one is found among many operations on others.
func TestStaleReadFoundAmongOtherRegisters(t *testing.T) {
	var steps []step
	for i := int64(0); i < 200; i++ {
		steps = append(steps, step{int(i % 4), write(1+int(i%2), "x"), 100 * i, 100*i + 50, saw("", int32(i/2+1))})
	}
	steps = append(steps,
		step{5, write(0, "a"), 10, 20, saw("", 1)},
		step{6, read(0), 19000, 19100, saw(initValue, 0)},
	)
	if res, _ := check(t, "", steps...); res != porcupine.Illegal {
		t.Fatalf("got %v, want illegal", res)
	}
}

// resolved runs the history through resolve with the given final versions, then checks it.
func resolved(t *testing.T, final map[int]int32, steps ...step) (porcupine.CheckResult, resolution) {
	t.Helper()
	h := &history{}
	for _, s := range steps {
		h.add(s.client, s.in, s.call, s.out, s.ret)
	}
	ops, res := resolve(h.ops, final)
	got, _ := linearizable(ops, 10*time.Second, "")
	return got, res
}

// Unknown writes that every version is accounted without did not take effect; one a read
// saw did, at the version the read saw.
func TestResolve(t *testing.T) {
	res, r := resolved(t, map[int]int32{0: 2},
		step{0, write(0, "a"), 10, 0, unknown}, // read below: took effect as v1
		step{1, write(0, "b"), 15, 0, unknown}, // never seen, versions all claimed: dropped
		step{2, read(0), 20, 30, saw("a", 1)},
		step{2, write(0, "c"), 40, 50, saw("", 2)},
		step{3, cas(0, 7, "d"), 45, 0, unknown}, // dropped too
		step{finalClient, read(0), 60, 70, saw("c", 2)},
	)
	if res != porcupine.Ok || r != (resolution{happened: 1, dropped: 2}) {
		t.Fatalf("got %v %+v", res, r)
	}
	// A version nobody known made: the unseen unknown writes stay for the checker.
	res, r = resolved(t, map[int]int32{0: 3},
		step{0, write(0, "a"), 10, 20, saw("", 1)},
		step{1, write(0, "b"), 15, 0, unknown},
		step{2, write(0, "x"), 16, 0, unknown}, // v2 is nobody's known write: x may have made it
		step{finalClient, read(0), 60, 70, saw("b", 3)},
	)
	if res != porcupine.Ok || r != (resolution{happened: 1, ambiguous: 1}) {
		t.Fatalf("got %v %+v", res, r)
	}
}

// Resolving never hides a violation: a stale read is still one, and so is a value read
// before its write was called, or a final version that a known write went past.
func TestResolveKeepsViolations(t *testing.T) {
	cases := map[string][]step{
		"stale read": {
			{0, write(0, "a"), 10, 20, saw("", 1)},
			{1, write(0, "b"), 12, 0, unknown},
			{1, read(0), 30, 40, saw(initValue, 0)},
			{finalClient, read(0), 60, 70, saw("a", 1)},
		},
		"read before the write": {
			{1, read(0), 1, 5, saw("a", 1)},
			{0, write(0, "a"), 10, 0, unknown},
			{finalClient, read(0), 60, 70, saw("a", 1)},
		},
		"lost write": {
			{0, write(0, "a"), 10, 20, saw("", 1)},
			{0, write(0, "b"), 30, 40, saw("", 2)},
			{1, write(0, "c"), 35, 0, unknown},
			{finalClient, read(0), 60, 70, saw("a", 1)},
		},
	}
	for name, steps := range cases {
		final := map[int]int32{0: steps[len(steps)-1].out.version}
		if res, r := resolved(t, final, steps...); res != porcupine.Illegal {
			t.Errorf("%s: got %v (%+v), want illegal", name, res, r)
		}
	}
}
