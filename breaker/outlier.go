package breaker

import (
	"math/bits"
	"sort"
)

// Outliers: ejection takes out one member that is worse than its peers, as Envoy's
// outlier detection judges a host against its cluster. When every member is equally
// slow or failing (an overloaded ensemble, a stall of the whole machine, an election),
// ejecting one only moves its sessions, and their load, onto the others, which then look
// worse still: that is the ensemble's trouble, the breaker's to judge, and no member is
// ejected for it.

// outlier reports whether a member whose figure is own (a failure ratio, a stalled share
// of time) stands out from its peers in rotation: own reaches threshold while the peers'
// median stays under half of it. With no peer in rotation a member is nobody's outlier.
// Every ejection rule that counts against one member (connect failures, failure ratio,
// stalled share; the latency rule compares with the peers' median on its own terms)
// goes through it.
func outlier(own float64, peers []float64, threshold float64) bool {
	if own < threshold || len(peers) == 0 {
		return false
	}
	return median(peers) < threshold/2
}

// median of xs, which it sorts.
func median(xs []float64) float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[n/2]
}

// standsOut judges m's figure own against fig of its peers in rotation that carry
// traffic through zkgate (see observed): a peer with none, such as the leader that
// routing keeps sessions off, shows no stalls or failures because nothing was asked of
// it, not because it would do better. With no such peer, m's own figure decides.
func (j *Ejector) standsOut(m *member, own, threshold float64, fig func(*member) float64) bool {
	var peers []float64
	for _, p := range j.members {
		if p != m && !p.ejected && !p.down && p.observed() {
			peers = append(peers, fig(p))
		}
	}
	if len(peers) == 0 {
		return own >= threshold
	}
	return outlier(own, peers, threshold)
}

// observed reports whether the window holds any figure of p's: replies, failures,
// stalls, a stalled share, connect failures.
func (p *member) observed() bool {
	return p.requests > 0 || p.samples > 0 || p.stalls > 0 || p.stalled > 0 || p.c.connectFails.Load() > 0
}

// failureRatio is m's failures over its requests in the window, stalls counted as in
// the failure-ratio rule (only once min_sessions sessions stalled together), and the
// requests it stands on. A member with no requests has a ratio of 0.
func (j *Ejector) failureRatio(m *member) (float64, int64) {
	failures, requests := m.failures, m.requests
	if bits.OnesCount64(m.stallSess) >= j.cfg.MinSessions {
		failures += m.stalls
	} else {
		requests -= m.stalls // one session's load (see Stalled)
	}
	if requests <= 0 {
		return 0, 0
	}
	return float64(failures) / float64(requests), requests
}
