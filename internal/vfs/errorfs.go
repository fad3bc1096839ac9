package vfs

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// Op names a file-system operation that an Injector may fail.
type Op int

// The operations an Injector sees.
const (
	OpCreate Op = iota
	OpOpen
	OpRead
	OpWrite
	OpSync
	OpTruncate
	OpPreallocate
	OpRemove
	OpRename
	OpMkdir
	OpList
	OpStat
	OpSyncDir
	OpClose
	// OpWriteAtSync is the write of File.WriteAtSync; its sync is OpSync.
	OpWriteAtSync
)

var opNames = [...]string{"create", "open", "read", "write", "sync", "truncate",
	"preallocate", "remove", "rename", "mkdir", "list", "stat", "syncdir", "close", "writesync"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op?"
}

// ErrInjected is the error an ErrorFS returns for an injected failure unless the
// Injector chose another (ENOSPC, say).
var ErrInjected = errors.New("injected failure")

// ErrNoSpace is what a full disk returns from write.
var ErrNoSpace = syscall.ENOSPC

// Fault is an Injector's verdict on one call.
type Fault struct {
	// Err, if not nil, fails the call.
	Err error
	// ShortWrite, for OpWrite with Err set, writes only this many bytes of the
	// buffer before failing, as a crash or a full disk mid-write does. For
	// OpPreallocate it grows the file by this many zero bytes (at most to the
	// size asked for) before failing, as a full disk while writing the zeros
	// does.
	ShortWrite int
	// DropUnsynced, for OpSync with Err set, also loses what was written since
	// the last successful sync: the file is cut back to its size then and
	// bytes overwritten inside it read as they did then. After a failed fsync
	// the kernel may drop the dirty pages and report success to a later fsync
	// ("fsyncgate"), so a caller that acknowledged unsynced data loses it.
	DropUnsynced bool
}

// Injector decides whether the call op on path fails.
type Injector func(op Op, path string) Fault

// ErrorFS wraps an FS and fails the calls its Injector picks. It is safe for
// concurrent use; the Injector may be swapped at any time with SetInjector.
type ErrorFS struct {
	fs  FS
	mu  sync.Mutex
	inj Injector
}

var _ FS = (*ErrorFS)(nil)

// NewErrorFS wraps fs. A nil Injector injects nothing.
func NewErrorFS(fs FS, inj Injector) *ErrorFS { return &ErrorFS{fs: fs, inj: inj} }

// SetInjector replaces the Injector.
func (e *ErrorFS) SetInjector(inj Injector) {
	e.mu.Lock()
	e.inj = inj
	e.mu.Unlock()
}

func (e *ErrorFS) check(op Op, path string) Fault {
	e.mu.Lock()
	inj := e.inj
	e.mu.Unlock()
	if inj == nil {
		return Fault{}
	}
	f := inj(op, path)
	return f
}

func wrap(op Op, path string, err error) error {
	return &os.PathError{Op: op.String(), Path: path, Err: err}
}

func (e *ErrorFS) Create(name string) (File, error) {
	if f := e.check(OpCreate, name); f.Err != nil {
		return nil, wrap(OpCreate, name, f.Err)
	}
	f, err := e.fs.Create(name)
	if err != nil {
		return nil, err
	}
	return newErrorFile(f, e), nil
}

func (e *ErrorFS) Open(name string) (File, error) {
	if f := e.check(OpOpen, name); f.Err != nil {
		return nil, wrap(OpOpen, name, f.Err)
	}
	f, err := e.fs.Open(name)
	if err != nil {
		return nil, err
	}
	return newErrorFile(f, e), nil
}

func (e *ErrorFS) OpenReadWrite(name string) (File, error) {
	if f := e.check(OpOpen, name); f.Err != nil {
		return nil, wrap(OpOpen, name, f.Err)
	}
	f, err := e.fs.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return newErrorFile(f, e), nil
}

func (e *ErrorFS) Remove(name string) error {
	if f := e.check(OpRemove, name); f.Err != nil {
		return wrap(OpRemove, name, f.Err)
	}
	return e.fs.Remove(name)
}

func (e *ErrorFS) Rename(oldname, newname string) error {
	if f := e.check(OpRename, newname); f.Err != nil {
		return wrap(OpRename, newname, f.Err)
	}
	return e.fs.Rename(oldname, newname)
}

func (e *ErrorFS) MkdirAll(dir string, perm os.FileMode) error {
	if f := e.check(OpMkdir, dir); f.Err != nil {
		return wrap(OpMkdir, dir, f.Err)
	}
	return e.fs.MkdirAll(dir, perm)
}

func (e *ErrorFS) List(dir string) ([]string, error) {
	if f := e.check(OpList, dir); f.Err != nil {
		return nil, wrap(OpList, dir, f.Err)
	}
	return e.fs.List(dir)
}

func (e *ErrorFS) Stat(name string) (os.FileInfo, error) {
	if f := e.check(OpStat, name); f.Err != nil {
		return nil, wrap(OpStat, name, f.Err)
	}
	return e.fs.Stat(name)
}

func (e *ErrorFS) SyncDir(dir string) error {
	if f := e.check(OpSyncDir, dir); f.Err != nil {
		return wrap(OpSyncDir, dir, f.Err)
	}
	return e.fs.SyncDir(dir)
}

// Lock is never failed by the injector.
func (e *ErrorFS) Lock(name string) (io.Closer, error) { return e.fs.Lock(name) }

type errorFile struct {
	f File
	e *ErrorFS

	mu     sync.Mutex
	synced int64 // size at the last successful sync (or at open)
	// undo holds, oldest first, the bytes below synced that writes since the
	// last successful sync overwrote, so that DropUnsynced can restore them.
	undo []undoRecord
}

// undoRecord is what the file held at off before a write.
type undoRecord struct {
	off int64
	old []byte
}

var _ File = (*errorFile)(nil)

func newErrorFile(f File, e *ErrorFS) *errorFile {
	ef := &errorFile{f: f, e: e}
	if st, err := f.Stat(); err == nil {
		ef.synced = st.Size()
	}
	return ef
}

func (f *errorFile) Name() string { return f.f.Name() }

func (f *errorFile) Read(p []byte) (int, error) {
	if flt := f.e.check(OpRead, f.Name()); flt.Err != nil {
		return 0, wrap(OpRead, f.Name(), flt.Err)
	}
	return f.f.Read(p)
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if flt := f.e.check(OpRead, f.Name()); flt.Err != nil {
		return 0, wrap(OpRead, f.Name(), flt.Err)
	}
	return f.f.ReadAt(p, off)
}

func (f *errorFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	flt := f.e.check(OpWrite, f.Name())
	if flt.Err != nil {
		p = p[:min(flt.ShortWrite, len(p))]
	}
	off, err := f.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if err := f.saveOld(off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := f.f.Write(p)
	if flt.Err != nil {
		return n, wrap(OpWrite, f.Name(), flt.Err)
	}
	return n, err
}

// WriteAt is failed by the injector as OpWrite, as Write is.
func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	flt := f.e.check(OpWrite, f.Name())
	if flt.Err != nil {
		p = p[:min(flt.ShortWrite, len(p))]
	}
	if err := f.saveOld(off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := f.f.WriteAt(p, off)
	if flt.Err != nil {
		return n, wrap(OpWrite, f.Name(), flt.Err)
	}
	return n, err
}

// saveOld remembers the bytes below the synced size that a write of n bytes
// at off will overwrite.
func (f *errorFile) saveOld(off, n int64) error {
	if off >= f.synced || n == 0 {
		return nil
	}
	old := make([]byte, min(n, f.synced-off))
	k, err := f.f.ReadAt(old, off)
	if k < len(old) {
		if err == nil || err == io.EOF {
			// The file is shorter than at the last sync (truncated since).
			old = old[:k]
		} else {
			return err
		}
	}
	f.undo = append(f.undo, undoRecord{off: off, old: old})
	return nil
}

// dropUnsynced makes the file read as it did at the last successful sync, as
// far as the wrapped file allows.
func (f *errorFile) dropUnsynced() {
	if st, err := f.f.Stat(); err == nil && st.Size() > f.synced {
		f.f.Truncate(f.synced)
	}
	pos, err := f.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return
	}
	for i := len(f.undo) - 1; i >= 0; i-- {
		u := f.undo[i]
		if _, err := f.f.Seek(u.off, io.SeekStart); err == nil {
			f.f.Write(u.old)
		}
	}
	f.undo = nil
	f.f.Seek(pos, io.SeekStart)
}

func (f *errorFile) Seek(offset int64, whence int) (int64, error) {
	return f.f.Seek(offset, whence)
}

func (f *errorFile) Sync() error { return f.sync(f.f.Sync) }

// SyncData is failed by the injector as OpSync: to the caller it is an fsync
// like any other, and one rule breaks both.
func (f *errorFile) SyncData() error { return f.sync(f.f.SyncData) }

func (f *errorFile) sync(flush func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flt := f.e.check(OpSync, f.Name()); flt.Err != nil {
		if flt.DropUnsynced {
			f.dropUnsynced()
		}
		return wrap(OpSync, f.Name(), flt.Err)
	}
	if err := flush(); err != nil {
		return err
	}
	if st, err := f.f.Stat(); err == nil {
		f.synced = st.Size()
	}
	f.undo = nil
	return nil
}

// WriteAtSync is failed by the injector first as OpWriteAtSync (with
// ShortWrite, that many bytes of p reach the file, unsynced, as from a torn
// write), then as OpSync (with DropUnsynced, p and everything written since the last sync
// are lost; without, p is in the file but not synced). When it succeeds, the
// whole file counts as synced: the model of a caller that leaves no other
// bytes unsynced when it makes one (as the WAL does).
func (f *errorFile) WriteAtSync(p []byte, off int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flt := f.e.check(OpWriteAtSync, f.Name()); flt.Err != nil {
		q := p[:min(flt.ShortWrite, len(p))]
		if err := f.saveOld(off, int64(len(q))); err != nil {
			return err
		}
		f.f.WriteAt(q, off)
		return wrap(OpWriteAtSync, f.Name(), flt.Err)
	}
	if flt := f.e.check(OpSync, f.Name()); flt.Err != nil {
		if flt.DropUnsynced {
			f.dropUnsynced()
		} else if err := f.saveOld(off, int64(len(p))); err == nil {
			f.f.WriteAt(p, off)
		}
		return wrap(OpSync, f.Name(), flt.Err)
	}
	if err := f.f.WriteAtSync(p, off); err != nil {
		return err
	}
	if st, err := f.f.Stat(); err == nil {
		f.synced = st.Size()
	}
	f.undo = nil
	return nil
}

// DirectWrites is the wrapped file's.
func (f *errorFile) DirectWrites() bool { return f.f.DirectWrites() }

func (f *errorFile) Truncate(size int64) error {
	if flt := f.e.check(OpTruncate, f.Name()); flt.Err != nil {
		return wrap(OpTruncate, f.Name(), flt.Err)
	}
	return f.f.Truncate(size)
}

func (f *errorFile) Preallocate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flt := f.e.check(OpPreallocate, f.Name()); flt.Err != nil {
		if flt.ShortWrite > 0 {
			if st, err := f.f.Stat(); err == nil {
				f.f.Preallocate(min(size, st.Size()+int64(flt.ShortWrite)))
			}
		}
		return wrap(OpPreallocate, f.Name(), flt.Err)
	}
	// Preallocate writes only past the end: a drop truncates that away, so
	// there is nothing to undo.
	return f.f.Preallocate(size)
}

func (f *errorFile) Stat() (os.FileInfo, error) { return f.f.Stat() }

func (f *errorFile) Close() error {
	if flt := f.e.check(OpClose, f.Name()); flt.Err != nil {
		f.f.Close()
		return wrap(OpClose, f.Name(), flt.Err)
	}
	return f.f.Close()
}
