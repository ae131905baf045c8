// Package jobs is the scheduler's job domain: the record kept for every job,
// the state machine that moves it and the fencing that keeps a superseded
// attempt from overwriting the outcome of the attempt that replaced it.
package jobs

import (
	"fmt"
	"strings"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// State is a job's lifecycle state as the record and the API show it.
type State string

// The states of a job. QUEUED and RUNNING are live; the others are terminal
// and absorbing: no event moves a job out of them.
const (
	StateQueued    State = "QUEUED"
	StateRunning   State = "RUNNING"
	StateSucceeded State = "SUCCEEDED"
	StateFailed    State = "FAILED"
	StateCancelled State = "CANCELLED"
	StateTimedOut  State = "TIMED_OUT"
)

// States lists every state, live ones first.
var States = []State{StateQueued, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateTimedOut}

// Terminal reports whether s is an end state.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateTimedOut:
		return true
	}
	return false
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	switch s {
	case StateQueued, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateTimedOut:
		return true
	}
	return false
}

// ParseState parses a state name, case-insensitively and with or without
// the protobuf "JOB_STATE_" prefix.
func ParseState(s string) (State, error) {
	st := State(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "JOB_STATE_"))
	if !st.Valid() {
		return "", fmt.Errorf("%w: unknown state %q", ErrInvalidEvent, s)
	}
	return st, nil
}

// StateFromProto converts a protobuf state; JOB_STATE_UNSPECIFIED and
// unknown values give "".
func StateFromProto(s jobsv1.JobState) State {
	switch s {
	case jobsv1.JobState_JOB_STATE_QUEUED:
		return StateQueued
	case jobsv1.JobState_JOB_STATE_RUNNING:
		return StateRunning
	case jobsv1.JobState_JOB_STATE_SUCCEEDED:
		return StateSucceeded
	case jobsv1.JobState_JOB_STATE_FAILED:
		return StateFailed
	case jobsv1.JobState_JOB_STATE_CANCELLED:
		return StateCancelled
	case jobsv1.JobState_JOB_STATE_TIMED_OUT:
		return StateTimedOut
	}
	return ""
}

// Proto converts s to its protobuf value.
func (s State) Proto() jobsv1.JobState {
	switch s {
	case StateQueued:
		return jobsv1.JobState_JOB_STATE_QUEUED
	case StateRunning:
		return jobsv1.JobState_JOB_STATE_RUNNING
	case StateSucceeded:
		return jobsv1.JobState_JOB_STATE_SUCCEEDED
	case StateFailed:
		return jobsv1.JobState_JOB_STATE_FAILED
	case StateCancelled:
		return jobsv1.JobState_JOB_STATE_CANCELLED
	case StateTimedOut:
		return jobsv1.JobState_JOB_STATE_TIMED_OUT
	}
	return jobsv1.JobState_JOB_STATE_UNSPECIFIED
}
