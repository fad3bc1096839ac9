//go:build invariants

package raftnode

// invariants: this build checks the invariants of invariants.go and panics
// when one does not hold.
const invariants = true
