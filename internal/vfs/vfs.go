// Package vfs puts every file-system call that the WAL and the snapshot store make
// behind a small interface, so that tests can inject the failures that real disks
// produce: a short write, a failed fsync, a full disk.
//
// Production code uses Default, a thin layer over package os. Tests wrap it in an
// ErrorFS (see errorfs.go) whose injector decides, call by call, what fails.
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"unsafe"
)

// File is the subset of *os.File the storage layer needs.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	// Sync flushes the file's data and all its metadata to stable storage. An
	// error means the durability of everything written since the last
	// successful Sync or SyncData is unknown; callers must treat it as fatal
	// (see package wal).
	Sync() error
	// SyncData flushes the file's data and the metadata needed to read it back
	// (its size and block allocation) to stable storage, but not, for
	// example, its modification time: fdatasync(2) on Linux, Sync elsewhere.
	// Overwriting bytes inside the file and then calling SyncData writes no
	// inode. It makes a file's contents durable exactly as Sync does; the
	// file's name is made durable only by SyncDir. Errors are fatal as for
	// Sync.
	SyncData() error
	// WriteAtSync writes p at off and returns once p is durable, as WriteAt
	// followed by SyncData does for the whole file; bytes written before it
	// elsewhere and not yet synced need not be durable after it. When p's
	// address, p's length and off are multiples of DirectAlign (see
	// AlignedBuffer), on Linux it is one write that bypasses the page cache
	// (O_DIRECT with RWF_DSYNC, through io_uring where available): no page
	// is dirtied and written back, no separate flush waits for it. Its bytes
	// must then not also sit dirty in the page cache (the kernel would
	// write those back first): write a range either this way or through
	// Write and SyncData, or sync the buffered writes first. Elsewhere, and
	// where the file system refuses O_DIRECT, it is WriteAt and SyncData.
	// Errors are fatal as for Sync: the range's contents are unknown, and
	// a direct write may even still be running (see uring_linux.go), so the
	// caller must neither change p nor write the range again.
	WriteAtSync(p []byte, off int64) error
	// DirectWrites reports whether an aligned WriteAtSync writes directly,
	// bypassing the page cache, on a file system that overwrites allocated
	// blocks in place (so that a direct write into space written before
	// needs no new space): ext4, xfs or tmpfs on Linux. Elsewhere it is
	// WriteAt and SyncData (and a copy-on-write file system may find its
	// disk full at the write).
	DirectWrites() bool
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Preallocate makes the file at least size bytes long by writing zeros
	// after its current end (fallocate's unwritten extents would make the
	// first write to each block change metadata again). Bytes before the
	// current end and the file offset are not changed; a file already size
	// bytes long is left alone. Later writes below size overwrite written,
	// allocated blocks, so neither they nor a SyncData after them change the
	// file's size or allocation. On error (ENOSPC) the file may have grown
	// partly, with zeros.
	Preallocate(size int64) error
	// Stat returns the file's metadata.
	Stat() (os.FileInfo, error)
	// Name returns the path the file was opened with.
	Name() string
}

// FS is the file-system surface of the storage layer.
type FS interface {
	// Create creates name for writing, truncating it if it exists. A new
	// file gets mode 0600: a node's files are for its own user alone.
	Create(name string) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing.
	OpenReadWrite(name string) (File, error)
	// Remove deletes a file or an empty directory.
	Remove(name string) error
	// Rename atomically replaces newname with oldname. The rename is durable only
	// after SyncDir of the parent directory.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and its parents with mode perm (less the umask).
	MkdirAll(dir string, perm os.FileMode) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat returns metadata of name.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the creation, removal and renaming of entries of dir durable.
	SyncDir(dir string) error
	// Lock takes an exclusive advisory lock on name (created if missing,
	// mode 0600), so that two processes never open the same data directory.
	// The lock is held until the returned Closer is closed or the process
	// exits.
	Lock(name string) (io.Closer, error)
}

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Default is the operating system's file system.
var Default FS = osFS{}

type osFS struct{}

var _ FS = osFS{}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return newOSFile(f), nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return newOSFile(f), nil
}

func (osFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return newOSFile(f), nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error {
	return os.MkdirAll(dir, perm)
}
func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

func (osFS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

type osFile struct {
	*os.File
	direct *directFile // see WriteAtSync; per platform
}

func newOSFile(f *os.File) osFile { return osFile{File: f, direct: &directFile{}} }

var _ File = osFile{}

// DirectAlign is the alignment WriteAtSync needs of its buffer's address,
// its length and its offset for a direct write: a multiple of the logical
// block size of every common device.
const DirectAlign = 4096

// AlignedBuffer returns a zeroed buffer of n bytes whose address is a multiple
// of DirectAlign.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+DirectAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % DirectAlign); r != 0 {
		skip = DirectAlign - r
	}
	return b[skip : skip+n : skip+n]
}

// directAligned reports whether p and off meet DirectAlign.
func directAligned(p []byte, off int64) bool {
	return len(p) > 0 && len(p)%DirectAlign == 0 && off%DirectAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%DirectAlign == 0
}

// writeAtSync is WriteAtSync without a direct write.
func (f osFile) writeAtSync(p []byte, off int64) error {
	if _, err := f.WriteAt(p, off); err != nil {
		return err
	}
	return f.SyncData()
}

// zeroChunk is how many zeros Preallocate writes per call.
const zeroChunk = 256 << 10

func (f osFile) Preallocate(size int64) error {
	st, err := f.File.Stat()
	if err != nil {
		return err
	}
	off := st.Size()
	if off >= size {
		return nil
	}
	zeros := make([]byte, min(size-off, zeroChunk))
	for off < size {
		n, err := f.WriteAt(zeros[:min(size-off, int64(len(zeros)))], off)
		off += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic writes data to path so that a crash leaves either the old file or
// the complete new one: write to a temporary file, fsync it, rename it over path,
// fsync the directory.
func WriteFileAtomic(fs FS, path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		fs.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fs.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		fs.Remove(tmp)
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		fs.Remove(tmp)
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}
