package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
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

// TestPreallocateWritesZeros: Preallocate grows the file with zeros that take
// real blocks, leaves the data and the file offset alone, and never shrinks.
func TestPreallocateWritesZeros(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := Default.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	const size = 1<<20 + 5 // not a multiple of the chunk size
	if err := f.Preallocate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Preallocate(10); err != nil {
		t.Fatal(err)
	}
	// Overwrites in place at the offset where the data ends.
	if _, err := f.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("size after Preallocate(%d) and a write inside = %d", size, st.Size())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Blocks*512 < size {
		t.Fatalf("%d bytes allocated for %d bytes reserved", sys.Blocks*512, size)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("xyz"), make([]byte, size-3)...)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("file differs from data plus zeros at byte %d (length %d)", i, len(got))
	}
}

// TestSyncData: SyncData succeeds on a real file (fdatasync on Linux), and an
// ErrorFS fails it like Sync, through OpSync, so that a rule written for
// fsync failures covers both.
func TestSyncData(t *testing.T) {
	dir := t.TempDir()
	f, err := Default.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatalf("SyncData: %v", err)
	}
	f.Close()
	var ops []Op
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		ops = append(ops, op)
		if op == OpSync {
			return Fault{Err: ErrInjected}
		}
		return Fault{}
	})
	ef, err := efs.OpenReadWrite(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if err := ef.SyncData(); !errors.Is(err, ErrInjected) {
		t.Fatalf("SyncData = %v, want the injected failure", err)
	}
	if len(ops) != 2 || ops[1] != OpSync {
		t.Fatalf("injector saw %v, want [open sync]", ops)
	}
}

// TestErrorFSPreallocateShortWrite: a full disk while writing the zeros grows
// the file partly.
func TestErrorFSPreallocateShortWrite(t *testing.T) {
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		if op == OpPreallocate {
			return Fault{Err: ErrNoSpace, ShortWrite: 100}
		}
		return Fault{}
	})
	f, err := efs.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("abc"))
	if err := f.Preallocate(4096); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Preallocate = %v, want ENOSPC", err)
	}
	if st, _ := f.Stat(); st.Size() != 103 {
		t.Fatalf("size %d after a short Preallocate, want 103", st.Size())
	}
}

// TestErrorFSFailedSyncDropsUnsynced: a failed sync with DropUnsynced loses
// what was written since the last successful sync, both the bytes appended
// and the bytes overwritten in place, with Sync as with SyncData.
func TestErrorFSFailedSyncDropsUnsynced(t *testing.T) {
	for _, dataOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("dataOnly=%v", dataOnly), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			fail := false
			efs := NewErrorFS(Default, func(op Op, path string) Fault {
				if op == OpSync && fail {
					return Fault{Err: ErrInjected, DropUnsynced: true}
				}
				return Fault{}
			})
			f, err := efs.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sync := f.Sync
			if dataOnly {
				sync = f.SyncData
			}
			f.Write([]byte("durable"))
			if err := f.Preallocate(12); err != nil {
				t.Fatal(err)
			}
			if err := sync(); err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("-lo"))  // in place, over synced zeros
			f.Write([]byte("st!!")) // in place and past the end
			f.Seek(2, io.SeekStart)
			f.Write([]byte("R")) // over synced data
			fail = true
			if err := sync(); !errors.Is(err, ErrInjected) {
				t.Fatalf("sync = %v, want injected failure", err)
			}
			got, _ := os.ReadFile(path)
			if want := "durable\x00\x00\x00\x00\x00"; string(got) != want {
				t.Fatalf("file holds %q after failed sync, want only the synced bytes %q", got, want)
			}
			// The offset is kept: the next write goes where it would have.
			if pos, _ := f.Seek(0, io.SeekCurrent); pos != 3 {
				t.Fatalf("offset %d after the drop, want 3", pos)
			}
		})
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

// TestErrorFSWriteAtSync: ErrorFS fails WriteAtSync as a write (a short one
// leaves part of it, unsynced) and as a sync (with DropUnsynced, the bytes are
// lost); once it succeeds its bytes survive a later failed sync that drops.
func TestErrorFSWriteAtSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	var fault Fault
	var failOp Op = -1
	efs := NewErrorFS(Default, func(op Op, path string) Fault {
		if op == failOp {
			return fault
		}
		return Fault{}
	})
	f, err := efs.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Preallocate(16); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	zeros := "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

	failOp, fault = OpWriteAtSync, Fault{Err: ErrInjected, ShortWrite: 3}
	if err := f.WriteAtSync([]byte("torn"), 4); !errors.Is(err, ErrInjected) {
		t.Fatalf("WriteAtSync with a failed write = %v, want the injected failure", err)
	}
	if got, want := read(), zeros[:4]+"tor"+zeros[7:]; got != want {
		t.Fatalf("after a short WriteAtSync the file holds %q, want %q", got, want)
	}
	failOp, fault = OpSync, Fault{Err: ErrInjected, DropUnsynced: true}
	if err := f.WriteAtSync([]byte("lost"), 8); !errors.Is(err, ErrInjected) {
		t.Fatalf("WriteAtSync with a failed sync = %v, want the injected failure", err)
	}
	if got := read(); got != zeros {
		t.Fatalf("after a WriteAtSync whose sync failed and dropped, the file holds %q, want the synced zeros", got)
	}
	failOp = -1
	// A buffered write, then WriteAtSync over it and past the end: both
	// count as synced from then on.
	if _, err := f.WriteAt([]byte("aaaa"), 8); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAtSync([]byte("kept"), 8); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAtSync([]byte("more"), 16); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("gone"), 0); err != nil {
		t.Fatal(err)
	}
	failOp = OpSync
	if err := f.SyncData(); !errors.Is(err, ErrInjected) {
		t.Fatalf("SyncData = %v, want the injected failure", err)
	}
	if got, want := read(), zeros[:8]+"kept"+zeros[12:]+"more"; got != want {
		t.Fatalf("after a dropped sync the file holds %q, want %q (the WriteAtSync bytes kept)", got, want)
	}
}

// TestNewFilesArePrivate: whatever the umask, files the storage layer
// creates are readable and writable by their owner alone.
func TestNewFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	f, err := Default.Create(filepath.Join(dir, "created"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := WriteFileAtomic(Default, filepath.Join(dir, "atomic"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	lock, err := Default.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		t.Fatal(err)
	}
	lock.Close()
	for _, name := range []string{"created", "atomic", "LOCK"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
	}
}
