package httpapi

import (
	"context"
	"iter"
	"net/http"
	"strconv"
	"time"

	"github.com/distkv/distkv/internal/backup"
	"github.com/distkv/distkv/internal/kv"
)

// Backuper is implemented by backends that can copy their state for a
// backup: GET /backup. Without it the endpoint answers 501.
type Backuper interface {
	// Backup returns a consistent copy of the state that reflects every
	// write acknowledged before the call (a linearizable read barrier). The
	// copy must not hold up writes while it is read. An error is answered
	// as for a read.
	Backup(ctx context.Context) (BackupView, error)
}

// BackupView is a copy of a shard's state at one revision.
type BackupView struct {
	Shard     uint64
	ClusterID uint64 // 0: the cluster predates ids
	// Revision is the applied index of the copy.
	Revision uint64
	// Pairs are kv.View.SnapshotPairs of the copy, or the state pair and
	// pairs of the whole key space read at Revision (see backup.Write); an
	// error ends the stream, cut short, before its trailer.
	Pairs iter.Seq2[kv.KeyValue, error]
}

// Headers of a GET /backup answer, sent before the body.
const (
	HeaderBackupRevision = "X-Distkv-Revision"
	HeaderClusterID      = "X-Distkv-Cluster-Id"
)

// serveBackup answers GET /backup: the node's state, as of a linearizable
// read barrier, streamed in the backup format (package backup; chunked, its
// length unknown in advance). The revision is in the X-Distkv-Revision
// header. A failure after the body has started aborts the connection, so
// the client gets a truncated stream, which the format's checksum refuses.
func (h *handler) serveBackup(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	if !noParams(w, r, "GET /backup") {
		return
	}
	b, ok := h.backend.(Backuper)
	if !ok {
		writeError(w, http.StatusNotImplemented, "backups are not available on this node")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	view, err := b.Backup(ctx)
	cancel()
	if err != nil {
		h.backendError(ctx, w, r, "backup", err, false)
		return
	}
	hdr, err := backup.NewHeader(view.Shard, view.Revision, view.ClusterID, h.now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// The body takes as long as the state is large: no write deadline.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(HeaderBackupRevision, strconv.FormatUint(view.Revision, 10))
	if view.ClusterID != 0 {
		w.Header().Set(HeaderClusterID, strconv.FormatUint(view.ClusterID, 16))
	}
	w.WriteHeader(http.StatusOK)
	start := time.Now()
	pairs, err := backup.Write(w, hdr, view.Pairs)
	if err != nil {
		h.log.Warn("backup stream failed", "revision", view.Revision, "pairs", pairs, "err", err)
		panic(http.ErrAbortHandler)
	}
	h.log.Info("backup streamed", "revision", view.Revision, "pairs", pairs, "duration", time.Since(start))
}
