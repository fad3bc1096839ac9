//go:build !broken_localreads

package raftnode

// brokenLocalReads is false: the real build. See broken.go.
const brokenLocalReads = false
