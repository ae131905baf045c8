package jobs

import (
	"errors"
	"fmt"
)

// ErrNotFound is returned for a job id that has no record.
var ErrNotFound = errors.New("job not found")

// ErrExists is returned by Store.Create for a job id that already has a
// record.
var ErrExists = errors.New("job exists")

// ErrTerminal is returned when an operation needs a live job (cancel) and
// the job has already ended.
var ErrTerminal = errors.New("job already ended")

// ErrInvalidSpec is wrapped by every *FieldError: the job spec cannot run.
var ErrInvalidSpec = errors.New("invalid job spec")

// ErrInvalidEvent is returned for a status event that no runner should
// send (no state, attempt 0, another job's id).
var ErrInvalidEvent = errors.New("invalid job event")

// ErrCorrupt is returned for a stored record that does not decode.
var ErrCorrupt = errors.New("corrupt job record")

// FieldError says which field of a job spec or request is wrong, by its
// JSON path (e.g. "task.command.command").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Unwrap makes errors.Is(err, ErrInvalidSpec) hold.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
