//go:build !linux

package vfs

// SyncData falls back to a full Sync where fdatasync is not available.
func (f osFile) SyncData() error { return f.Sync() }

// SyncMethod says how SyncData makes data durable, for the node's start-up
// log.
func SyncMethod() string { return "fsync" }
