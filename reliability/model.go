//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// A register is one znode's data and version, as ZooKeeper keeps them.
type register struct {
	value   string
	version int32
}

// opKind is what a register client did.
type opKind uint8

const (
	opRead  opKind = iota // a barrier (multi of one check(path, -1)) then getData
	opWrite               // setData with version -1
	opCAS                 // setData with the version the client last read
)

func (k opKind) String() string { return [...]string{"read", "write", "cas"}[k] }

// regInput is an operation on one register.
type regInput struct {
	key     int
	kind    opKind
	value   string // written (write, cas)
	version int32  // expected (cas)
}

// regOutput is what the client saw. unknown: the request may or may not have taken effect
// (connection loss, the reject code, an operation timeout); failed: a definite refusal
// (BADVERSION on a cas); otherwise the read's value and version, or the write's new version.
type regOutput struct {
	unknown bool
	failed  bool
	value   string
	version int32
}

// registerModel is ZooKeeper's data/version semantics for setData and getData, one
// partition per register. An operation whose outcome is unknown is modelled as porcupine's
// etcd model does: it returns at the end of the history, so it may take effect at any point
// after its call, or (taking effect last) not at all as far as any read can tell.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]int, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return register{value: initValue} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(register), input.(regInput), output.(regOutput)
		switch in.kind {
		case opRead:
			return out.value == st.value && out.version == st.version, st
		case opWrite:
			next := register{value: in.value, version: st.version + 1}
			return out.unknown || out.version == next.version, next
		default: // cas
			if st.version != in.version {
				return out.unknown || out.failed, st
			}
			next := register{value: in.value, version: st.version + 1}
			return out.unknown || (!out.failed && out.version == next.version), next
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := fmt.Sprintf("%q v%d", out.value, out.version)
		switch {
		case out.unknown:
			res = "unknown"
		case out.failed:
			res = "BADVERSION"
		case in.kind != opRead:
			res = fmt.Sprintf("v%d", out.version)
		}
		switch in.kind {
		case opRead:
			return fmt.Sprintf("read(r%d) -> %s", in.key, res)
		case opWrite:
			return fmt.Sprintf("write(r%d, %q) -> %s", in.key, in.value, res)
		}
		return fmt.Sprintf("cas(r%d, v%d, %q) -> %s", in.key, in.version, in.value, res)
	},
	DescribeState: func(state any) string {
		st := state.(register)
		return fmt.Sprintf("%q v%d", st.value, st.version)
	},
}

// initValue is every register's data when the workload starts (version 0).
const initValue = "init"

// history collects the register operations of a run. Times are nanoseconds on one monotonic
// clock; an unknown outcome returns at the end.
type history struct {
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// add records one finished operation. Reads whose outcome is unknown say nothing and are
// left out.
func (h *history) add(client int, in regInput, call int64, out regOutput, ret int64) {
	if out.unknown {
		if in.kind == opRead {
			return
		}
		ret = unknownReturn
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// unknownReturn is later than any real return in a history.
const unknownReturn = int64(1) << 62

// linearizable checks the history. On a violation (or a timeout) it writes porcupine's
// visualization to dir and says where.
func linearizable(ops []porcupine.Operation, timeout time.Duration, dir string) (porcupine.CheckResult, string) {
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, timeout)
	if res == porcupine.Ok || dir == "" {
		return res, ""
	}
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: writing %s: %v\n", path, err)
		return res, ""
	}
	return res, path
}

// resolution says what resolve made of the unknown outcomes.
type resolution struct {
	happened  int // a read saw the value: it took effect, at the version the read saw
	dropped   int // every version is accounted for without it: it did not take effect
	ambiguous int // left to the checker as unknown
}

// resolve settles unknown writes with ZooKeeper's versions, so that the checker does not
// have to search every subset of them (161 unknown writes in one kill-leader run made
// porcupine run past 5 minutes). Each setData that takes effect makes exactly one version
// of its znode, and every written value is unique. So:
//   - an unknown write whose value a read returned took effect and made the version that
//     read saw, no later than that read returned;
//   - once the versions 1..final of a register are each claimed by a write known to have
//     taken effect, no other write took effect, and the remaining unknown ones are dropped.
//
// Anything inconsistent (a value read before its write was called, two writes claiming one
// version, a version past final) is left as it is, for the checker to report. final is
// each register's version read after the workload stopped, which is also in ops.
func resolve(ops []porcupine.Operation, final map[int]int32) ([]porcupine.Operation, resolution) {
	type seen struct {
		version int32
		ret     int64
	}
	observed := map[int]map[string]seen{}
	claimed := map[int]map[int32]bool{}
	claim := func(k int, v int32) {
		if claimed[k] == nil {
			claimed[k] = map[int32]bool{}
		}
		claimed[k][v] = true
	}
	for _, op := range ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		switch {
		case out.unknown || out.failed:
		case in.kind == opRead:
			if observed[in.key] == nil {
				observed[in.key] = map[string]seen{}
			}
			if s, ok := observed[in.key][out.value]; !ok || op.Return < s.ret {
				observed[in.key][out.value] = seen{out.version, op.Return}
			}
		default:
			claim(in.key, out.version)
		}
	}
	var res resolution
	out := make([]porcupine.Operation, 0, len(ops))
	var pending []int // indexes in out of the unknown writes still unsettled
	for _, op := range ops {
		in := op.Input.(regInput)
		if op.Output.(regOutput).unknown {
			if s, ok := observed[in.key][in.value]; ok && s.ret >= op.Call && !claimed[in.key][s.version] {
				op.Output, op.Return = regOutput{version: s.version}, s.ret
				claim(in.key, s.version)
				res.happened++
			} else {
				pending = append(pending, len(out))
			}
		}
		out = append(out, op)
	}
	settled := map[int]bool{}
	for k, f := range final {
		n := int32(0)
		for v := range claimed[k] {
			if v >= 1 && v <= f {
				n++
			}
		}
		settled[k] = n == f && len(claimed[k]) == int(f)
	}
	drop := map[int]bool{}
	for _, i := range pending {
		if settled[out[i].Input.(regInput).key] {
			drop[i] = true
			res.dropped++
		} else {
			res.ambiguous++
		}
	}
	if len(drop) == 0 {
		return out, res
	}
	kept := out[:0:0]
	for i, op := range out {
		if !drop[i] {
			kept = append(kept, op)
		}
	}
	return kept, res
}
