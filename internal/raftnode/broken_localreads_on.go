//go:build broken_localreads

package raftnode

// brokenLocalReads is set by the broken_localreads build tag; see broken.go.
const brokenLocalReads = true
