package raftnode

import (
	"errors"
	"syscall"
)

// ErrStopped is returned to callers when the node has stopped (shut down, or a
// fatal storage error; see Node.Err).
var ErrStopped = errors.New("node stopped")

// ErrNoLeader is returned when a request needs a leader and none is known.
var ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing one")

// ErrRemoved is what Err reports once this node was removed from the cluster
// and stopped itself.
var ErrRemoved = errors.New("removed from the cluster")

// outcomeUnknownError is what a proposal gets when the node stops after the
// proposal was handed to Raft: the entry may be in the log (this node's or,
// forwarded, the leader's) and be committed and applied by the others.
// errors.Is(err, ErrStopped) and friends still hold through Unwrap.
type outcomeUnknownError struct{ err error }

func (e outcomeUnknownError) Error() string { return e.err.Error() }
func (e outcomeUnknownError) Unwrap() error { return e.err }

// OutcomeUnknown tells an API layer that the write may or may not have
// happened, so that the client neither counts on it nor retries it blindly.
func (e outcomeUnknownError) OutcomeUnknown() bool { return true }

// notMadeError is what a write gets when its request gave up before Raft took
// it (no leader was known all along): the write certainly was not made.
type notMadeError struct{ err error }

func (e notMadeError) Error() string { return e.err.Error() }
func (e notMadeError) Unwrap() error { return e.err }

// NotMade tells an API layer that the write was refused before it could reach
// the log, so the client may retry it as a new write.
func (e notMadeError) NotMade() bool { return true }

// ErrNoSpace is returned at once for writes, and for linearizable reads that
// need the Raft loop, while this node's disk is full: its log cannot take the
// next entries, so nothing new is proposed. The node keeps running and retries;
// writes resume by themselves once space is freed. errors.Is(ErrNoSpace,
// syscall.ENOSPC) holds.
var ErrNoSpace error = noSpaceError{}

type noSpaceError struct{}

func (noSpaceError) Error() string {
	return "no space left on device: this node cannot write its log; writes resume when space is freed"
}

func (noSpaceError) Is(target error) bool { return target == syscall.ENOSPC }

// InsufficientStorage tells an API layer that the request was refused for lack
// of disk space before it reached the log (HTTP 507), unlike other errors that
// merely wrap an ENOSPC.
func (noSpaceError) InsufficientStorage() bool { return true }
