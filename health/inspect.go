package health

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Report is everything one round of four-letter words says about a member; `zkgate check`
// prints it.
type Report struct {
	Address  string   `json:"address"`
	Status   Status   `json:"-"`
	State    string   `json:"status"`
	Mode     string   `json:"mode"`
	Serving  bool     `json:"serving"`
	Zxid     int64    `json:"zxid"`
	Latency  float64  `json:"latency_ms"` // probe round trip
	Srvr     *Srvr    `json:"srvr,omitempty"`
	Mntr     *Mntr    `json:"-"`
	Conf     *Conf    `json:"-"`
	Ruok     *bool    `json:"ruok,omitempty"`
	Refused  []string `json:"refused_commands,omitempty"`
	Error    string   `json:"error,omitempty"`
	Problems []string `json:"problems"`
}

// Inspect asks a member srvr, then mntr, conf, ruok and isro, each under timeout. Only
// srvr is needed; the others fill in what the whitelist allows.
func Inspect(ctx context.Context, addr string, timeout time.Duration) Report {
	r := Report{Address: addr, Problems: []string{}}
	start := time.Now()
	out, err := Ask(ctx, addr, "srvr", timeout)
	r.Latency = float64(time.Since(start).Microseconds()) / 1000
	var s Srvr
	if err == nil {
		s, err = ParseSrvr(out)
	}
	r.Status = Classify(s, err)
	r.State = r.Status.String()
	if err != nil {
		r.Error = err.Error()
		if errors.Is(err, ErrNotWhitelisted) {
			r.Refused = append(r.Refused, "srvr")
		}
		if r.Status == StatusDown {
			return r
		}
	} else {
		r.Srvr, r.Mode, r.Zxid = &s, s.Mode, s.Zxid
	}
	r.Serving = r.Status == StatusServing
	for _, cmd := range []string{"mntr", "conf", "ruok", "isro"} {
		out, err := Ask(ctx, addr, cmd, timeout)
		if errors.Is(err, ErrNotWhitelisted) {
			r.Refused = append(r.Refused, cmd)
			continue
		}
		if err != nil {
			continue
		}
		switch cmd {
		case "mntr":
			if m, err := ParseMntr(out); err == nil {
				r.Mntr = &m
			}
		case "conf":
			c := ParseConf(out)
			r.Conf = &c
		case "ruok":
			ok := ParseRuok(out)
			r.Ruok = &ok
		}
	}
	return r
}

// InspectAll inspects every member in parallel, in the given order.
func InspectAll(ctx context.Context, addrs []string, timeout time.Duration) []Report {
	out := make([]Report, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = Inspect(ctx, a, timeout)
		}()
	}
	wg.Wait()
	return out
}

// Assessment is a whole ensemble's verdict for `zkgate check`.
type Assessment struct {
	Members  []Report `json:"members"`
	Leader   string   `json:"leader"`
	Quorum   bool     `json:"quorum"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
}

// LagWarning is how far (in transactions) a member's zxid may trail the leader's, within
// one epoch, before check calls it lagging.
const LagWarning = 1000

// Assess is a pure function: it fills each report's problems and the ensemble's, from what
// the reports say. Problems that make the ensemble unhealthy: a member not serving, no
// leader, no quorum. Warnings (reported, still healthy): maxClientCnxns limits, a
// restrictive whitelist, lagging zxids, mixed versions.
func Assess(reports []Report) Assessment {
	a := Assessment{Members: reports, Problems: []string{}, Healthy: true}
	states := make([]MemberState, len(reports))
	versions := map[string]bool{}
	var leaderZxid int64 = -1
	for i := range reports {
		r := &reports[i]
		states[i] = MemberState{Address: r.Address, Status: r.Status, Mode: r.Mode}
		if r.Mode == "leader" || r.Mode == "standalone" {
			leaderZxid = r.Zxid
		}
		if r.Srvr != nil && r.Srvr.Version != "" {
			versions[strings.SplitN(r.Srvr.Version, "-", 2)[0]] = true
		}
	}
	v := Summarize(states, time.Time{})
	a.Leader, a.Quorum = v.Leader, v.Quorum
	for i := range reports {
		r := &reports[i]
		if r.Problems == nil {
			r.Problems = []string{}
		}
		switch r.Status {
		case StatusDown:
			r.Problems = append(r.Problems, "down: "+r.Error)
			a.Healthy = false
		case StatusNotServing:
			r.Problems = append(r.Problems, "not serving (no quorum)")
			a.Healthy = false
		case StatusReadOnly:
			r.Problems = append(r.Problems, "read-only")
			a.Healthy = false
		}
		if r.Conf != nil {
			switch n := r.Conf.MaxClientCnxns; {
			case n > 0:
				r.Problems = append(r.Problems, fmt.Sprintf("maxClientCnxns=%d: every session through zkgate comes from one address, so this member takes at most %d of them; set maxClientCnxns=0 or raise it", n, n))
			}
		} else if r.Status != StatusDown && slices.Contains(r.Refused, "conf") {
			r.Problems = append(r.Problems, "conf not whitelisted: cannot verify maxClientCnxns (server default 60 per address caps sessions through zkgate)")
		}
		if len(r.Refused) > 0 {
			sort.Strings(r.Refused)
			r.Problems = append(r.Problems, "4lw whitelist refuses "+strings.Join(r.Refused, ",")+" (zkgate needs srvr; mntr, conf, ruok and isro add detail)")
		}
		if leaderZxid >= 0 && r.Srvr != nil && Epoch(r.Zxid) == Epoch(leaderZxid) && leaderZxid-r.Zxid > LagWarning {
			r.Problems = append(r.Problems, fmt.Sprintf("zxid lags the leader by %d", leaderZxid-r.Zxid))
		}
	}
	if a.Leader == "" {
		a.Problems = append(a.Problems, "no leader")
		a.Healthy = false
	}
	if !a.Quorum {
		a.Problems = append(a.Problems, "no quorum")
		a.Healthy = false
	}
	if len(versions) > 1 {
		vs := make([]string, 0, len(versions))
		for v := range versions {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		a.Problems = append(a.Problems, "mixed versions: "+strings.Join(vs, ", "))
	}
	return a
}
