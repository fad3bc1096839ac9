package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"testing"

	"github.com/distkv/distkv/internal/backup"
	"github.com/distkv/distkv/internal/kv"
)

// backupBackend is a fakeBackend that serves backups of its own store.
type backupBackend struct {
	*fakeBackend
	err error
}

var _ Backuper = (*backupBackend)(nil)

func (b *backupBackend) Backup(ctx context.Context) (BackupView, error) {
	if b.err != nil {
		return BackupView{}, b.err
	}
	return BackupView{Shard: 1, ClusterID: 0xfeed, Revision: b.store.Applied(), Pairs: withoutErrors(b.store.Snapshot().SnapshotPairs())}, nil
}

func TestBackupStreamsTheState(t *testing.T) {
	b := &backupBackend{fakeBackend: newFake()}
	for i := 1; i <= 30; i++ {
		if _, err := b.store.Apply(uint64(i), kv.Command{Op: kv.OpPut, Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Config{}, b)
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(h, http.MethodGet, "/backup", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /backup: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get(HeaderBackupRevision); got != "30" {
		t.Fatalf("%s = %q, want 30", HeaderBackupRevision, got)
	}
	var keys int
	hdr, err := backup.Decode(bytes.NewReader(rec.Body.Bytes()), func(p kv.KeyValue) error {
		if len(p.Key) > 0 {
			keys++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Revision != 30 || hdr.ClusterID != 0xfeed || keys != 30 {
		t.Fatalf("backup at revision %d of cluster %x with %d keys, want 30, feed, 30", hdr.Revision, hdr.ClusterID, keys)
	}

	if rec := serve(h, http.MethodPost, "/backup", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /backup: %d, want 405", rec.Code)
	}
	b.err = errors.New("no leader")
	if rec := serve(h, http.MethodGet, "/backup", nil); rec.Code == http.StatusOK {
		t.Fatalf("GET /backup with a failing backend: 200")
	}
	plain, _ := newTestAPI(t, Config{})
	if rec := serve(plain, http.MethodGet, "/backup", nil); rec.Code != http.StatusNotImplemented {
		t.Fatalf("GET /backup without a Backuper: %d, want 501", rec.Code)
	}
}

// withoutErrors is pairs as a sequence that never fails.
func withoutErrors(pairs iter.Seq[kv.KeyValue]) iter.Seq2[kv.KeyValue, error] {
	return func(yield func(kv.KeyValue, error) bool) {
		for p := range pairs {
			if !yield(p, nil) {
				return
			}
		}
	}
}
