package accounts

import "time"

// MaxHistory bounds an account's lifecycle history: the record lives in
// one KV entry, so only the latest transitions are kept.
const MaxHistory = 50

// Transition is one change of an account's state.
type Transition struct {
	From State     `json:"from"`
	To   State     `json:"to"`
	At   time.Time `json:"at"`
	// Reason says what moved the account.
	Reason string `json:"reason"`
	// Error is the account's error when the transition is to FAILED or
	// ORPHANED.
	Error string `json:"error,omitempty"`
}

// record appends a transition, dropping the oldest beyond MaxHistory.
// The slice is copied: a clone and its original never share an array.
func (r *Record) record(t Transition) {
	keep := r.History
	if len(keep) >= MaxHistory {
		keep = keep[len(keep)-MaxHistory+1:]
	}
	h := make([]Transition, 0, len(keep)+1)
	r.History = append(append(h, keep...), t)
}
