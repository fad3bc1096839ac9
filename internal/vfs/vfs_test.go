package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, want := range []string{"one", "two"} {
		if err := WriteFileAtomic(Default, p, []byte(want)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestErrorFSFailedSyncKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(Default, p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		if op == OpSync {
			return Fault{Err: ErrInjected}
		}
		return Fault{}
	})
	err := WriteFileAtomic(efs, p, []byte("new"))
	if !errors.Is(err, ErrInjected) {
		t.Fatalf("err = %v, want injected failure", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Fatalf("file = %q after failed atomic write, want old", got)
	}
}

func TestErrorFSShortWrite(t *testing.T) {
	dir := t.TempDir()
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		if op == OpWrite {
			return Fault{Err: ErrNoSpace, ShortWrite: 3}
		}
		return Fault{}
	})
	f, err := efs.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Write([]byte("abcdef"))
	if n != 3 || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Write = %d, %v; want 3, ENOSPC", n, err)
	}
	f.Close()
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	if string(got) != "abc" {
		t.Fatalf("file holds %q, want abc", got)
	}
}

func TestPreallocateKeepsSize(t *testing.T) {
	f, err := Default.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	if err := f.Preallocate(1 << 20); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() != 2 {
		t.Fatalf("size after preallocate = %d, want 2", st.Size())
	}
}

func TestErrorFSFailedSyncDropsUnsynced(t *testing.T) {
	dir := t.TempDir()
	fail := false
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		if op == OpSync && fail {
			return Fault{Err: ErrInjected, DropUnsynced: true}
		}
		return Fault{}
	})
	f, err := efs.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("durable"))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("-lost"))
	fail = true
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("sync = %v, want injected failure", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	if string(got) != "durable" {
		t.Fatalf("file holds %q after failed sync, want only the synced part", got)
	}
}

func TestLockIsExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "LOCK")
	l, err := Default.Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Default.Lock(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock = %v, want ErrLocked", err)
	}
	l.Close()
	l2, err := Default.Lock(p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Close()
}
