package wal

import "time"

// Stats are a WAL's counters since Open and its size now, for monitoring.
// Reading them costs the appenders nothing but one uncontended lock.
type Stats struct {
	// Frames and Records count what Appends wrote: frames (each holding the
	// records of one or more coalesced Appends) and the records in them.
	Frames, Records uint64
	// Syncs counts the syncs of appended frames (an fdatasync, or with
	// Config.Direct one direct write); each is also reported to
	// Config.SyncObserver.
	Syncs uint64
	// BytesWritten counts the bytes of the frames Appends wrote, headers
	// included, as stored (compressed). A new segment's header and carry-over
	// frame and the zero reserve are not counted.
	BytesWritten uint64
	// Segments is the number of segment files, the active one included.
	Segments int
	// SizeBytes is their data length (see Size).
	SizeBytes int64
}

// Stats returns the WAL's counters and size. Safe for concurrent use.
func (w *WAL) Stats() Stats {
	s := Stats{
		Frames:       uint64(w.nFrames.Load()),
		Records:      uint64(w.nRecords.Load()),
		Syncs:        uint64(w.nSyncs.Load()),
		BytesWritten: uint64(w.nBytes.Load()),
	}
	w.mu.Lock()
	s.Segments, s.SizeBytes = len(w.segs), w.total
	w.mu.Unlock()
	return s
}

// observedSyncData is syncData, timed for Config.SyncObserver when one is
// set (two clock reads and the observer's call per sync; nothing without
// one).
func (w *WAL) observedSyncData() error {
	obs := w.cfg.SyncObserver
	if obs == nil {
		return w.syncData()
	}
	start := time.Now()
	err := w.syncData()
	if err == nil {
		obs(time.Since(start))
	}
	return err
}
