//go:build !broken_earlyack

package raftnode

// brokenEarlyAck is false: the real build. See broken.go.
const brokenEarlyAck = false
