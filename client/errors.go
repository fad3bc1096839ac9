package client

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound is matched (errors.Is) by the error of Get or Delete of a
	// key that does not exist: a *StatusError with code 404 and the detail
	// "Key not found".
	ErrNotFound = errors.New("key not found")
	// ErrUnavailable is matched by the error of a call that no endpoint
	// served before Config.RetryFor passed: a *StatusError with code 503
	// (no leader, not served in time, node stopped), or the error of the
	// last connection that failed.
	ErrUnavailable = errors.New("cluster unavailable")
)

// StatusError is an answer other than 200.
type StatusError struct {
	// Code is the HTTP status.
	Code int
	// Detail is the server's explanation, the answer's "detail" (or, for
	// an answer that is not distkv's JSON, its text).
	Detail string
	// Body is the answer as it was sent.
	Body []byte
	// keyNotFound: the answer to a request for one key says that it does
	// not exist.
	keyNotFound bool
}

// Error gives the status and the detail, as "404 Key not found".
func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Detail) }

// Is matches ErrNotFound for a missing key and ErrUnavailable for a 503.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.keyNotFound
	case ErrUnavailable:
		return e.Code == 503
	}
	return false
}

// MayHaveApplied reports whether the answer says that the write may still
// have been applied: a 503 after the server's deadline, for a write already
// in the log. A write of this package that carried request ids is retried
// after such an answer; a membership change is not.
func (e *StatusError) MayHaveApplied() bool {
	return e.Code == 503 && strings.Contains(e.Detail, "may still have been applied")
}

// ConflictError is the 409 of a write whose condition failed (PrevVersion,
// PrevRevision, CreateOnly, Version): nothing was written.
type ConflictError struct {
	StatusError
	// Key is the key whose condition failed.
	Key string
	// Version and Revision are the key's current version and the revision
	// of its last change; both 0 when it does not exist.
	Version  int64
	Revision int64
}

// Unwrap returns the StatusError, so that errors.As finds a *StatusError in
// a *ConflictError too.
func (e *ConflictError) Unwrap() error { return &e.StatusError }

// unavailableError is the connection error of the last attempt of a call
// that no endpoint served. It reads as that error; errors.Is matches
// ErrUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
