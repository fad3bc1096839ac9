//go:build !invariants

package raftnode

// invariants: the real build, whose invariant checks (invariants.go) fold
// away.
const invariants = false
