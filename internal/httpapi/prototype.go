package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The prototype's other endpoints (its v1.2 segments, v1.4 cluster status and
// v1.6 compaction), answered in its shapes from distkv's real state: the
// Raft view of the cluster, and the files of the node's data directory,
// which are read, never changed.

// prototypeTime is how the prototype wrote times (Python's isoformat of a
// naive datetime); distkv's are UTC.
const prototypeTime = "2006-01-02T15:04:05.000000"

// clusterStatus answers GET /cluster_status (the prototype's v1.4):
//
//	{"leader":{"id","url","status"} or null,
//	 "followers":{"<id>":{"url","status","last_heartbeat","seconds_since_last_heartbeat","role"}},
//	 "heartbeat_interval":<seconds>, "id":<this node>, "term":n}
//
// status is "healthy" or "down" as this node last heard from the member
// within two election timeouts, or "unknown" where this node cannot know (a
// follower hears only from its leader); last_heartbeat is that contact in
// Unix seconds (null if never).
func (h *handler) clusterStatus(w http.ResponseWriter) {
	st := h.backend.Status()
	now := h.now()
	type follower struct {
		URL           string   `json:"url"`
		Status        string   `json:"status"`
		LastHeartbeat *float64 `json:"last_heartbeat"`
		SinceLast     *float64 `json:"seconds_since_last_heartbeat"`
		Role          string   `json:"role,omitempty"`
	}
	type leader struct {
		ID     string `json:"id"`
		URL    string `json:"url"`
		Status string `json:"status"`
	}
	out := struct {
		Leader            *leader             `json:"leader"`
		Followers         map[string]follower `json:"followers"`
		HeartbeatInterval *float64            `json:"heartbeat_interval"`
		ID                string              `json:"id"`
		Term              uint64              `json:"term"`
	}{Followers: map[string]follower{}, ID: st.ID, Term: st.Term}
	if d := h.cfg.HeartbeatInterval; d > 0 {
		s := d.Seconds()
		out.HeartbeatInterval = &s
	}
	for _, m := range st.Members {
		health := "unknown"
		if m.Reachable != nil {
			health = "down"
			if *m.Reachable {
				health = "healthy"
			}
		}
		url := ""
		if m.HTTP != "" {
			url = "http://" + m.HTTP
			if h.cfg.TLS {
				url = "https://" + m.HTTP
			}
		}
		if m.ID == st.Leader {
			out.Leader = &leader{ID: m.ID, URL: url, Status: health}
			continue
		}
		f := follower{URL: url, Status: health, Role: m.Role}
		if t, err := time.Parse(time.RFC3339Nano, m.LastContact); err == nil && m.LastContact != "" {
			unix := float64(t.UnixMicro()) / 1e6
			since := max(now.Sub(t).Seconds(), 0)
			f.LastHeartbeat, f.SinceLast = &unix, &since
		}
		out.Followers[m.ID] = f
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// walSegment reports whether name is a WAL segment file:
// <16 hex digits>.wal (package wal's name; a .tmp file is one being made).
func walSegment(name string) bool {
	seq, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(seq) != 16 {
		return false
	}
	_, err := strconv.ParseUint(seq, 16, 64)
	return err == nil
}

// snapshotFile returns the log index of a snapshot file's name,
// <shard 16 hex>-<index 16 hex>.snap (package snap's name).
func snapshotFile(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ".snap")
	if !ok || len(base) != 33 || base[16] != '-' {
		return 0, false
	}
	if _, err := strconv.ParseUint(base[:16], 16, 64); err != nil {
		return 0, false
	}
	index, err := strconv.ParseUint(base[17:], 16, 64)
	return index, err == nil
}

// dataFiles lists the files of dir (a directory of the data directory) that
// keep says to, sorted by name, with their infos.
func (h *handler) dataFiles(dir string, keep func(string) bool) ([]fs.FileInfo, error) {
	entries, err := fs.ReadDir(h.dataFS, dir)
	if err != nil {
		return nil, err
	}
	var out []fs.FileInfo
	for _, e := range entries {
		if e.IsDir() || !keep(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile (compacted)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// noDataDir answers 501 when the node does not report its files.
func (h *handler) noDataDir(w http.ResponseWriter) bool {
	if h.dataFS != nil {
		return false
	}
	writeError(w, http.StatusNotImplemented, "this node does not report its data directory")
	return true
}

// segments answers GET /segments (the prototype's v1.2): the WAL's segment
// files, oldest first, the last one being written.
//
//	{"segments":[{"path","size","is_active"}],"total_segments":n,"max_segment_size":n,"total_size":n}
//
// A size is the file's, which includes the space the WAL reserves ahead of
// its writes (zeros, in steps of 4 MiB).
func (h *handler) segments(w http.ResponseWriter) {
	if h.noDataDir(w) {
		return
	}
	files, err := h.dataFiles("wal", walSegment)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "listing the WAL: "+err.Error())
		return
	}
	type segment struct {
		Path     string `json:"path"`
		Size     int64  `json:"size"`
		IsActive bool   `json:"is_active"`
	}
	out := struct {
		Segments       []segment `json:"segments"`
		TotalSegments  int       `json:"total_segments"`
		MaxSegmentSize int64     `json:"max_segment_size"`
		TotalSize      int64     `json:"total_size"`
	}{Segments: []segment{}, TotalSegments: len(files), MaxSegmentSize: h.cfg.WALSegmentSize}
	for i, f := range files {
		out.Segments = append(out.Segments, segment{
			Path: filepath.Join(h.cfg.DataDir, "wal", f.Name()), Size: f.Size(), IsActive: i == len(files)-1})
		out.TotalSize += f.Size()
	}
	body, _ := json.Marshal(out)
	writeJSON(w, http.StatusOK, body)
}

// Compactor is implemented by backends that compact their log on demand and
// remember their recent compactions: POST /compaction/run and the history of
// GET /compaction/status. Without it the first answers 501 and the second
// tells what the snapshot files do.
type Compactor interface {
	// Compact takes a snapshot of everything applied and compacts the log
	// behind it, and returns what that removed (a zero Time: nothing was
	// new since the last snapshot). An error is answered as for a read.
	Compact(ctx context.Context) (Compaction, error)
	// Compactions returns the recent compactions, oldest first.
	Compactions() []Compaction
}

// Compaction is one log compaction: a snapshot and the WAL it made
// unnecessary.
type Compaction struct {
	Time            time.Time
	SnapshotIndex   uint64
	EntriesRemoved  uint64 // log entries the WAL no longer keeps
	SegmentsRemoved int    // WAL segment files deleted
	Duration        time.Duration
}

// historyEntry is one compaction of GET /compaction/status.
type historyEntry struct {
	Timestamp         string   `json:"timestamp"`
	SnapshotIndex     uint64   `json:"snapshot_index"`
	EntriesRemoved    *uint64  `json:"entries_removed"`
	DurationSeconds   *float64 `json:"duration_seconds"`
	SegmentsCompacted *int     `json:"segments_compacted"`
}

// compactionStatus answers GET /compaction/status (the prototype's v1.6).
// distkv compacts its log behind each snapshot, which it takes every
// Config.SnapshotEntries applied entries or on POST /compaction/run:
//
//	{"enabled":true,"compaction_interval_seconds":null,"min_compaction_interval_seconds":null,
//	 "snapshot_entries":n,"last_compaction":<time> or null,"compaction_running":b,
//	 "compaction_history":[{"timestamp","snapshot_index","entries_removed","duration_seconds","segments_compacted"}]}
//
// The history, by snapshot index, holds the compactions a Compactor
// remembers, with every field, and the snapshot files kept that it does not
// (taken before the node started: their time is the file's, the rest null).
// Without a Compactor it holds the snapshot files kept, with entries_removed
// the entries a snapshot made unnecessary since the previous one kept (null
// for the oldest). Times are UTC. A snapshot being written (a .tmp file) is a
// compaction running.
func (h *handler) compactionStatus(w http.ResponseWriter) {
	if h.noDataDir(w) {
		return
	}
	snaps, err := h.dataFiles("snap", func(name string) bool { _, ok := snapshotFile(name); return ok })
	if err != nil && !isNotExist(err) {
		writeError(w, http.StatusInternalServerError, "listing the snapshots: "+err.Error())
		return
	}
	tmps, _ := h.dataFiles("snap", func(name string) bool { return strings.HasSuffix(name, ".snap.tmp") })
	out := struct {
		Enabled           bool           `json:"enabled"`
		Interval          *float64       `json:"compaction_interval_seconds"`
		MinInterval       *float64       `json:"min_compaction_interval_seconds"`
		SnapshotEntries   uint64         `json:"snapshot_entries"`
		LastCompaction    *string        `json:"last_compaction"`
		CompactionRunning bool           `json:"compaction_running"`
		CompactionHistory []historyEntry `json:"compaction_history"`
	}{Enabled: true, SnapshotEntries: h.cfg.SnapshotEntries, CompactionRunning: len(tmps) > 0, CompactionHistory: []historyEntry{}}
	slices.SortFunc(snaps, func(a, b fs.FileInfo) int {
		x, _ := snapshotFile(a.Name())
		y, _ := snapshotFile(b.Name())
		return cmpUint(x, y)
	})
	compactor, remembers := h.backend.(Compactor)
	known := map[uint64]bool{}
	if remembers {
		for _, c := range compactor.Compactions() {
			known[c.SnapshotIndex] = true
			entries, segments, secs := c.EntriesRemoved, c.SegmentsRemoved, c.Duration.Seconds()
			out.CompactionHistory = append(out.CompactionHistory, historyEntry{Timestamp: c.Time.UTC().Format(prototypeTime),
				SnapshotIndex: c.SnapshotIndex, EntriesRemoved: &entries, DurationSeconds: &secs, SegmentsCompacted: &segments})
		}
	}
	var prev uint64
	for i, f := range snaps {
		index, _ := snapshotFile(f.Name())
		if known[index] {
			continue
		}
		c := historyEntry{Timestamp: f.ModTime().UTC().Format(prototypeTime), SnapshotIndex: index}
		if i > 0 && !remembers {
			removed := index - prev
			c.EntriesRemoved = &removed
		}
		prev = index
		out.CompactionHistory = append(out.CompactionHistory, c)
	}
	slices.SortStableFunc(out.CompactionHistory, func(a, b historyEntry) int { return cmpUint(a.SnapshotIndex, b.SnapshotIndex) })
	if n := len(out.CompactionHistory); n > 0 {
		out.LastCompaction = &out.CompactionHistory[n-1].Timestamp
	}
	body, _ := json.Marshal(out)
	writeJSON(w, http.StatusOK, body)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// compactionRun answers POST /compaction/run (the prototype's v1.6): the
// node takes a snapshot now and compacts its log behind it.
//
//	{"status":"success","segments_compacted":n,"entries_removed":n,"snapshot_index":n,"duration_seconds":s}
//
// segments_compacted is the WAL segment files deleted, entries_removed the
// log entries the WAL no longer keeps; both are 0 when nothing was applied
// since the last snapshot (snapshot_index is then that one's). Errors as for
// a read: 503, 507 on a full disk.
func (h *handler) compactionRun(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r, "POST /compaction/run") {
		return
	}
	compactor, ok := h.backend.(Compactor)
	if !ok {
		writeError(w, http.StatusNotImplemented, "compaction on demand is not available on this node: it snapshots and compacts its log by itself every "+
			strconv.FormatUint(h.cfg.SnapshotEntries, 10)+" applied entries (--snapshot-entries); GET /compaction/status shows the compactions kept")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	c, err := compactor.Compact(ctx)
	if err != nil {
		h.backendError(ctx, w, r, "compaction", err, false)
		return
	}
	body, _ := json.Marshal(struct {
		Status            string  `json:"status"`
		SegmentsCompacted int     `json:"segments_compacted"`
		EntriesRemoved    uint64  `json:"entries_removed"`
		SnapshotIndex     uint64  `json:"snapshot_index"`
		DurationSeconds   float64 `json:"duration_seconds"`
	}{"success", c.SegmentsRemoved, c.EntriesRemoved, c.SnapshotIndex, c.Duration.Seconds()})
	writeJSON(w, http.StatusOK, body)
}

// compactionConfigure answers POST /compaction/configure, which does not fit
// distkv: compaction follows the snapshots, taken by entry count, not on a
// schedule that could be switched off or timed.
func (h *handler) compactionConfigure(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusUnprocessableEntity, "compaction cannot be configured at run time: distkv compacts its log behind each snapshot, taken every "+
		strconv.FormatUint(h.cfg.SnapshotEntries, 10)+" applied entries (the server flag --snapshot-entries); it has no interval and cannot be switched off (POST /compaction/run takes one now)")
}
