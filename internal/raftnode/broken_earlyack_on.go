//go:build broken_earlyack

package raftnode

// brokenEarlyAck is set by the broken_earlyack build tag; see broken.go.
const brokenEarlyAck = true
