package proxy

import (
	"sort"

	"github.com/zkgate/zkgate/health"
)

// Policy chooses among serving members.
type Policy string

// Routing policies.
const (
	// LeastConnections keeps sessions off the leader while followers serve, fewest zkgate
	// sessions first: the leader's CPU is kept for writes (ZooKeeper's leaderServes=no,
	// chosen per ensemble), at a cost in latency and throughput where the followers
	// carry every read (BENCHMARKS.md, session 10).
	LeastConnections Policy = "least-connections"
	// LeastConnectionsWithLeader (the default) counts the leader like any member, as
	// clients that connect directly spread over it, a follower first on a tie: every
	// member takes its share of the reads. The sessions on a hung leader move once health
	// finds it down, as a follower's do (RELIABILITY.md, pause-leader; BENCHMARKS.md,
	// session 11).
	LeastConnectionsWithLeader Policy = "least-connections-with-leader"
	RoundRobin                 Policy = "round-robin"
	Any                        Policy = "any" // the member order as configured
	// PreferObservers places sessions on serving observers first (how ZooKeeper users
	// scale reads), then followers, then the leader; fewest sessions first within each.
	PreferObservers Policy = "prefer-observers"
)

// RouteInput is everything Route decides on.
type RouteInput struct {
	View         *health.View
	Policy       Policy
	Sessions     map[string]int // sessions zkgate holds per member address
	LastZxidSeen int64          // from the ConnectRequest; 0 for a new session
	ReadOnly     bool           // the client accepts a read-only member
	Excluded     map[string]bool
	Counter      uint64 // round-robin position
}

// Route returns the members to try for a session, best first. Only members that serve
// (or are read-only, for a read-only client) and are not excluded are listed. A
// reconnecting session only goes to a member whose zxid has caught up with what the
// client saw; a member would close such a connection without an answer.
func Route(in RouteInput) []string {
	type cand struct {
		addr     string
		leader   bool
		observer bool
		readOnly bool
		sessions int
		order    int
	}
	var cands []cand
	followers := false
	for i, m := range in.View.Members {
		ok := m.Status == health.StatusServing || (in.ReadOnly && m.Status == health.StatusReadOnly)
		if !ok || in.Excluded[m.Address] {
			continue
		}
		if in.LastZxidSeen > 0 && m.Zxid < in.LastZxidSeen && !followerZxidUnknown(m) {
			continue
		}
		c := cand{addr: m.Address, leader: m.Mode == "leader", observer: m.Mode == "observer",
			readOnly: m.Status == health.StatusReadOnly, sessions: in.Sessions[m.Address], order: i}
		if !c.leader {
			followers = true
		}
		cands = append(cands, c)
	}
	switch in.Policy {
	case RoundRobin:
		if len(cands) > 0 {
			k := int(in.Counter % uint64(len(cands)))
			cands = append(cands[k:], cands[:k]...)
		}
	case Any:
	case PreferObservers:
		tier := func(c cand) int {
			switch {
			case c.observer:
				return 0
			case c.leader:
				return 2
			}
			return 1
		}
		sort.SliceStable(cands, func(i, j int) bool {
			a, b := cands[i], cands[j]
			if ta, tb := tier(a), tier(b); ta != tb {
				return ta < tb
			}
			if a.sessions != b.sessions {
				return a.sessions < b.sessions
			}
			return a.order < b.order
		})
	default:
		first := in.Policy != LeastConnectionsWithLeader && followers
		sort.SliceStable(cands, func(i, j int) bool {
			a, b := cands[i], cands[j]
			if first && a.leader != b.leader {
				return !a.leader
			}
			if a.sessions != b.sessions {
				return a.sessions < b.sessions
			}
			if a.leader != b.leader {
				return !a.leader
			}
			return a.order < b.order
		})
	}
	// A read-only client goes to a read-only member only when no member serves
	// read-write: a member in read-only mode next to a quorum is cut off from it.
	sort.SliceStable(cands, func(i, j int) bool { return !cands[i].readOnly && cands[j].readOnly })
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = c.addr
	}
	return out
}

// followerZxidUnknown: a follower reports Zxid 0x0 in srvr until it applies a
// transaction of the current epoch, so 0 says nothing about how far it is behind; such a
// member is tried, and if it is really behind it closes the connection and the next
// candidate is tried.
func followerZxidUnknown(m health.MemberState) bool { return m.Zxid == 0 }
