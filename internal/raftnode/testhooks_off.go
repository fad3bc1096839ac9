//go:build !testhooks

package raftnode

// testHooksBuilt: the real build, without the hooks of testhooks.go.
const testHooksBuilt = false
