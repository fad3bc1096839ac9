//go:build !linux

package vfs

// SyncData falls back to a full Sync where fdatasync is not available.
func (f osFile) SyncData() error { return f.Sync() }

// SyncMethod says how SyncData makes data durable, for the node's start-up
// log.
func SyncMethod() string { return "fsync" }

// directFile: no direct writes here.
type directFile struct{}

// WriteAtSync is WriteAt followed by SyncData.
func (f osFile) WriteAtSync(p []byte, off int64) error { return f.writeAtSync(p, off) }

// DirectWrites: never here.
func (f osFile) DirectWrites() bool { return false }

// Close closes the file.
func (f osFile) Close() error { return f.File.Close() }
