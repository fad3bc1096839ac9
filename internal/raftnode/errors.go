package raftnode

import "errors"

// ErrStopped is returned to callers when the node has stopped (shut down, or a
// fatal storage error; see Node.Err).
var ErrStopped = errors.New("node stopped")

// ErrNoLeader is returned when a request needs a leader and none is known.
var ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing one")
