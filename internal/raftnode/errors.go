package raftnode

import "errors"

// ErrStopped is returned to callers when the node has stopped (shut down, or a
// fatal storage error; see Node.Err).
var ErrStopped = errors.New("node stopped")

// ErrNoLeader is returned when a request needs a leader and none is known.
var ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing one")

// ErrRemoved is what Err reports once this node was removed from the cluster
// and stopped itself.
var ErrRemoved = errors.New("removed from the cluster")
