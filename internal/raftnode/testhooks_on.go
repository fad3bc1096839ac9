//go:build testhooks

package raftnode

// testHooksBuilt: this build has the test hooks of testhooks.go.
const testHooksBuilt = true
