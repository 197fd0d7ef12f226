package health

import (
	"errors"
	"time"
)

// Status is a member's health as zkgate sees it.
type Status int

// Member statuses, from worst to best.
const (
	StatusUnknown    Status = iota // not probed yet
	StatusDown                     // no answer: refused, reset, timed out or paused
	StatusNotServing               // answers, but has no quorum
	StatusReadOnly                 // serving in read-only mode
	StatusServing                  // leader, follower, observer or standalone
)

func (s Status) String() string {
	return [...]string{"unknown", "down", "not-serving", "read-only", "serving"}[s]
}

// Classify turns one probe's outcome into the status it shows.
func Classify(srvr Srvr, err error) Status {
	switch {
	case err == nil && srvr.Mode == "read-only":
		return StatusReadOnly
	case err == nil:
		return StatusServing
	case errors.Is(err, ErrNotServing):
		return StatusNotServing
	}
	return StatusDown
}

// Tracker holds a member's status with rise/fall counting: a change needs Rise
// consecutive better observations (or Fall worse ones) before it takes effect.
type Tracker struct {
	Status  Status
	Since   time.Time // when Status took effect
	pending Status    // the status being counted toward
	streak  int       // consecutive observations of pending
}

// Next is the state machine as a pure function: the tracker after one observation at
// time now. rise and fall below 1 count as 1.
func Next(t Tracker, observed Status, now time.Time, rise, fall int) Tracker {
	if t.Status == StatusUnknown {
		return Tracker{Status: observed, Since: now}
	}
	if observed == t.Status {
		t.pending, t.streak = observed, 0
		return t
	}
	if observed != t.pending {
		t.pending, t.streak = observed, 0
	}
	t.streak++
	need := max(fall, 1)
	if observed > t.Status {
		need = max(rise, 1)
	}
	if t.streak >= need {
		return Tracker{Status: observed, Since: now}
	}
	return t
}
