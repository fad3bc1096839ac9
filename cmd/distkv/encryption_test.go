package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// writeKeyFile writes a hex key file of 32 bytes of b.
func writeKeyFile(t *testing.T, b byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	hexKey := strings.Repeat(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]), 32)
	if err := os.WriteFile(path, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type logSink struct{ bytes.Buffer }

func (l *logSink) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestOpenEncryption walks a data directory through a node's starts: the
// first with a key creates the keys file, a wrong or missing key stops the
// start saying so, a new key plus the old one rotates, and data in the
// clear is never put under a keys file.
func TestOpenEncryption(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	k1, k2, k3 := writeKeyFile(t, 0x11), writeKeyFile(t, 0x22), writeKeyFile(t, 0x33)
	var logs logSink
	log := logs.logger()

	if c, err := openEncryption(dir, "", "", false, log); c != nil || err != nil {
		t.Fatalf("no key on a new directory: %v, %v", c, err)
	}
	c1, err := openEncryption(dir, k1, "", false, log)
	if err != nil || c1 == nil {
		t.Fatalf("first start with a key: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, crypt.KeysFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v, mode %v", err, st.Mode().Perm())
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v, want 0700", st.Mode().Perm())
	}
	again, err := openEncryption(dir, k1, "", true, log)
	if err != nil || !slices.Equal(again.KeyIDs(), c1.KeyIDs()) {
		t.Fatalf("restart with the same key: %v", err)
	}

	for _, tc := range []struct {
		name, key, old string
		want           error
		text           string
	}{
		{"no key", "", "", crypt.ErrKeyRequired, "start with --encryption-key-file"},
		{"wrong key", k2, "", crypt.ErrWrongKey, "give the key this data directory was encrypted with"},
		{"wrong old key", k3, k2, crypt.ErrWrongKey, "neither --encryption-key-file nor --old-encryption-key-file"},
		{"old key alone", "", k1, nil, "--old-encryption-key-file needs --encryption-key-file"},
	} {
		_, err := openEncryption(dir, tc.key, tc.old, true, log)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.want, tc.text)
		}
	}

	// Rotation at a start: new key plus the old one.
	c2, err := openEncryption(dir, k2, k1, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(c2.KeyIDs()) != 2 || c2.CurrentKeyID() == c1.CurrentKeyID() || !slices.Contains(c2.KeyIDs(), c1.CurrentKeyID()) {
		t.Fatalf("after rotation: keys %v, current %x (was %x)", c2.KeyIDs(), c2.CurrentKeyID(), c1.CurrentKeyID())
	}
	// The same flags at the next start rotate no more; the new key alone works.
	for _, old := range []string{k1, ""} {
		c, err := openEncryption(dir, k2, old, true, log)
		if err != nil || !slices.Equal(c.KeyIDs(), c2.KeyIDs()) {
			t.Fatalf("restart after rotation (old %q): %v, keys %v", old, err, c.KeyIDs())
		}
	}
	if _, err := openEncryption(dir, k1, "", true, log); !errors.Is(err, crypt.ErrWrongKey) {
		t.Fatalf("the retired key: %v", err)
	}

	// Data in the clear is not put under a keys file.
	plain := t.TempDir()
	if _, err := openEncryption(plain, k1, "", true, log); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Fatalf("a directory with data in the clear: %v", err)
	}
	if ok, _ := crypt.HasKeys(vfs.Default, plain); ok {
		t.Fatal("a keys file was created beside data in the clear")
	}

	// Key files that are not keys are refused with what was wrong.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("too short\n"), 0o600)
	if _, err := openEncryption(t.TempDir(), bad, "", false, log); err == nil || !strings.Contains(err.Error(), "want 32 raw bytes or 64 hex digits") {
		t.Fatalf("a bad key file: %v", err)
	}
	// A key file others may read is warned about.
	shared := writeKeyFile(t, 0x44)
	os.Chmod(shared, 0o644)
	if _, err := openEncryption(t.TempDir(), shared, "", false, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "encryption key file is open to other users") {
		t.Fatalf("no warning for a shared key file:\n%s", logs.String())
	}
}

func TestEncryptionRotateCommand(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := writeKeyFile(t, 0x11), writeKeyFile(t, 0x22)
	c1, err := openEncryption(dir, k1, "", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newEncryptionCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("rotate", "--data-dir", t.TempDir(), "--encryption-key-file", k2); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Fatalf("rotate of a directory without keys: %v", err)
	}
	// The wrong old key changes nothing.
	if _, err := run("rotate", "--data-dir", dir, "--encryption-key-file", k2); !errors.Is(err, crypt.ErrWrongKey) {
		t.Fatalf("rotate without the old key: %v", err)
	}
	out, err := run("rotate", "--data-dir", dir, "--encryption-key-file", k2, "--old-encryption-key-file", k1)
	if err != nil || !strings.Contains(out, "new data key") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	key2, _ := crypt.LoadMasterKey(k2)
	c2, err := crypt.Load(vfs.Default, dir, key2)
	if err != nil || len(c2.KeyIDs()) != 2 || !slices.Contains(c2.KeyIDs(), c1.CurrentKeyID()) {
		t.Fatalf("after rotate: %v, keys %v", err, c2.KeyIDs())
	}
	// A data-key-only rotation, then a refusal while a node holds the lock.
	if _, err := run("rotate", "--data-dir", dir, "--encryption-key-file", k2); err != nil {
		t.Fatal(err)
	}
	lock, err := vfs.Default.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// flock is per open file: a second Lock in this process conflicts too.
	if _, err := run("rotate", "--data-dir", dir, "--encryption-key-file", k2); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("rotate while locked: %v", err)
	}
}

// TestWALDumpEncrypted: wal dump and verify read an encrypted WAL with the
// key file, and without it (or with another) fail saying why.
func TestWALDumpEncrypted(t *testing.T) {
	dataDir := t.TempDir()
	k1, k2 := writeKeyFile(t, 0x11), writeKeyFile(t, 0x22)
	c, err := openEncryption(dataDir, k1, "", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w, err := wal.Open(wal.Config{Dir: filepath.Join(dataDir, "wal"), Cipher: c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("hidden-value")}
	data := binary.BigEndian.AppendUint64(nil, 1)
	e := raftpb.Entry{Term: 1, Index: 7, Type: raftpb.EntryNormal, Data: append(data, cmd.Marshal()...)}
	b, _ := e.Marshal()
	if err := w.Append([]wal.Record{{Shard: 1, Type: wal.RecordEntry, Index: 7, Data: b}}, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		c := newWALCommand()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(args)
		err := c.Execute()
		return out.String(), err
	}
	out, err := run("dump", dataDir, "--encryption-key-file", k1)
	if err != nil || !strings.Contains(out, `{"id": 7, "operation": "SET", "key": "k", "value": "hidden-value"}`) {
		t.Fatalf("dump with the key: %v\n%s", err, out)
	}
	if out, err := run("verify", dataDir, "--encryption-key-file", k1); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify with the key: %v\n%s", err, out)
	}
	if _, err := run("dump", dataDir); !errors.Is(err, crypt.ErrKeyRequired) || !strings.Contains(err.Error(), "give --encryption-key-file") {
		t.Fatalf("dump without the key: %v", err)
	}
	if _, err := run("dump", filepath.Join(dataDir, "wal"), "--encryption-key-file", k2); !errors.Is(err, crypt.ErrWrongKey) {
		t.Fatalf("dump with another key: %v", err)
	}
	if _, err := run("verify", dataDir); !errors.Is(err, crypt.ErrKeyRequired) {
		t.Fatalf("verify without the key: %v", err)
	}
}

// TestDataDirPermissions: a new data directory is 0700; a start on one that
// others can read or write warns; the dev cluster's token file is 0600.
func TestDataDirPermissions(t *testing.T) {
	var logs logSink
	dir := filepath.Join(t.TempDir(), "data", "n1")
	if err := prepareDataDir(dir, logs.logger()); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("new data directory mode %v", st.Mode().Perm())
	}
	if logs.Len() != 0 {
		t.Fatalf("warning for a private directory: %s", logs.String())
	}
	os.Chmod(dir, 0o755)
	if err := prepareDataDir(dir, logs.logger()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "data directory is open to other users: chmod 700 it") {
		t.Fatalf("no warning for a 0755 data directory: %q", logs.String())
	}

	devDir := filepath.Join(t.TempDir(), "dev")
	if _, err := devClusterToken(devDir); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(devDir, "cluster-token")
	if st, _ := os.Stat(token); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(devDir); st.Mode().Perm() != 0o700 {
		t.Fatalf("dev data directory mode %v, want 0700", st.Mode().Perm())
	}
	os.Chmod(token, 0o644)
	if _, err := devClusterToken(devDir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(token); st.Mode().Perm() != 0o600 {
		t.Fatalf("an old 0644 token file stayed %v", st.Mode().Perm())
	}
}
