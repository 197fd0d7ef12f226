package health

import "time"

// MemberState is one member in a View.
type MemberState struct {
	Address     string        `json:"address"`
	Status      Status        `json:"-"`
	Mode        string        `json:"mode"`                // from srvr; "" when down
	LastMode    string        `json:"last_mode,omitempty"` // the last mode it reported, kept while it is down
	Serving     bool          `json:"serving"`
	Zxid        int64         `json:"zxid"`
	Latency     time.Duration `json:"-"`              // the last probe's round trip
	AvgLatency  float64       `json:"avg_latency_ms"` // the server's own average, ms
	Connections int64         `json:"connections"`
	Outstanding int64         `json:"outstanding"`
	Version     string        `json:"version"`
	Since       time.Time     `json:"since"`
	LastError   string        `json:"last_error,omitempty"`
	Refused     []string      `json:"refused_commands,omitempty"` // 4lw commands not whitelisted
}

// View is the ensemble as last seen. Views are immutable once published.
type View struct {
	Members []MemberState `json:"members"`
	Leader  string        `json:"leader"` // address, "" when none serves as leader
	Quorum  bool          `json:"quorum"`
	At      time.Time     `json:"at"`
}

// Serving lists the members that can take a session now.
func (v *View) Serving() []MemberState {
	var out []MemberState
	for _, m := range v.Members {
		if m.Status == StatusServing {
			out = append(out, m)
		}
	}
	return out
}

// Member returns the state of the member at addr.
func (v *View) Member(addr string) (MemberState, bool) {
	for _, m := range v.Members {
		if m.Address == addr {
			return m, true
		}
	}
	return MemberState{}, false
}

// Summarize derives the leader and quorum from member states: a quorum is a serving
// leader (or standalone member) plus a strict majority of the voting members serving.
// Observers do not vote; a down member's role is unknown, so it counts as a voter. When
// two members claim to lead (a hung leader's last answer still stands while the others
// elected a new one), the later epoch leads: every election's leader starts a higher one.
func Summarize(members []MemberState, at time.Time) View {
	v := View{Members: members, At: at}
	voters, serving := 0, 0
	synced, maybeLeaderLost := false, false
	var leaderEpoch int64
	for _, m := range members {
		if m.Status == StatusServing && (m.Mode == "follower" || m.Mode == "observer") {
			synced = true
		}
		if m.Status != StatusServing && m.Status != StatusReadOnly {
			switch m.LastMode {
			case "", "leader", "standalone": // never seen, or seen leading
				maybeLeaderLost = true
			}
		}
		if m.Mode == "observer" {
			continue
		}
		voters++
		if m.Status == StatusServing {
			serving++
			if (m.Mode == "leader" || m.Mode == "standalone") && (v.Leader == "" || Epoch(m.Zxid) > leaderEpoch) {
				v.Leader, leaderEpoch = m.Address, Epoch(m.Zxid)
			}
		}
	}
	v.Quorum = v.Leader != "" && serving*2 > voters
	if v.Leader == "" && synced && !maybeLeaderLost {
		// zkgate fronts part of the ensemble (its observers, say) and the leader is not
		// among its members: a follower or an observer serves only while synced with a
		// leader that has a quorum. A member down that was never seen, or was last seen
		// leading, may be the lost leader: then no quorum is assumed, as before.
		v.Quorum = true
	}
	return v
}

// Epoch is the leader epoch a zxid belongs to: its high 32 bits (ZooKeeper's
// ZxidUtils.getEpochFromZxid). A leader elected after another starts a higher epoch, so a
// zxid of a later epoch than a member's own was committed under another leader.
func Epoch(zxid int64) int64 { return zxid >> 32 }
