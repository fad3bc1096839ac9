package raftnode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// TestAppliedMarkRoundTrip: the mark reads back as the last index advanced
// to, across reopenings, and never moves back.
func TestAppliedMarkRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var warned []string
	warn := func(msg string, args ...any) { warned = append(warned, msg) }
	m, err := openAppliedMark(vfs.Default, dir, warn)
	if err != nil {
		t.Fatal(err)
	}
	if m.index != 0 {
		t.Fatalf("new mark = %d, want 0", m.index)
	}
	for _, i := range []uint64{5, 9, 7, 1 << 40} {
		if err := m.advance(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	m, err = openAppliedMark(vfs.Default, dir, warn)
	if err != nil {
		t.Fatal(err)
	}
	if m.index != 1<<40 {
		t.Fatalf("reopened mark = %d, want %d", m.index, uint64(1<<40))
	}
	if err := m.advance(1<<40 + 1); err != nil {
		t.Fatal(err)
	}
	m.close()
	if m, err = openAppliedMark(vfs.Default, dir, warn); err != nil || m.index != 1<<40+1 {
		t.Fatalf("reopened after another advance: %v, %v; want %d", m.index, err, uint64(1<<40+1))
	}
	m.close()
	if len(warned) > 0 {
		t.Fatalf("warnings on intact marks: %v", warned)
	}
}

// TestAppliedMarkTornSlot: a write torn by a full disk damages one slot; the
// other still names the index before it, and the failure is ErrNoSpace.
func TestAppliedMarkTornSlot(t *testing.T) {
	dir := t.TempDir()
	var full bool
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if full && op == vfs.OpWrite {
			return vfs.Fault{Err: syscall.ENOSPC, ShortWrite: 7}
		}
		return vfs.Fault{}
	})
	m, err := openAppliedMark(efs, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		if err := m.advance(i * 10); err != nil {
			t.Fatal(err)
		}
	}
	full = true
	if err := m.advance(40); !errors.Is(err, wal.ErrNoSpace) {
		t.Fatalf("advance on a full disk = %v, want ErrNoSpace", err)
	}
	m.close()
	m, err = openAppliedMark(vfs.Default, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if m.index != 30 {
		t.Fatalf("mark after a torn write = %d, want 30", m.index)
	}
}

// TestAppliedMarkDamaged: a mark that cannot be read back counts as 0, with a
// warning that names the file; it does not stop the node from opening.
func TestAppliedMarkDamaged(t *testing.T) {
	for name, content := range map[string][]byte{
		"short":     []byte("DKVA\x01"),
		"bad magic": []byte("XXXX\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		"bad crc":   append([]byte("DKVA\x05\x00\x00\x00\x00\x00\x00\x00"), 1, 2, 3, 4),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, appliedMarkName), content, 0o644); err != nil {
				t.Fatal(err)
			}
			var warned []string
			m, err := openAppliedMark(vfs.Default, dir, func(msg string, args ...any) {
				warned = append(warned, msg)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.close()
			if m.index != 0 || len(warned) != 1 || !strings.Contains(warned[0], "applied mark") {
				t.Fatalf("damaged mark: index %d, warnings %q; want 0 and one warning", m.index, warned)
			}
		})
	}
}

// FuzzAppliedMark: the decoder never panics, and whatever index it returns
// is one that a valid slot of the input encodes.
func FuzzAppliedMark(f *testing.F) {
	var a, b [appliedMarkSize]byte
	encodeAppliedMark(&a, 7)
	encodeAppliedMark(&b, 9)
	f.Add(a[:])
	f.Add(append(a[:], b[:]...))
	f.Add(append(b[:], make([]byte, appliedMarkSize)...))
	f.Add([]byte("DKVA"))
	f.Fuzz(func(t *testing.T, data []byte) {
		index, err := decodeAppliedMark(data)
		if err != nil {
			return
		}
		for off := 0; off+appliedMarkSize <= len(data); off += appliedMarkSize {
			if i, err := decodeMarkSlot(data[off : off+appliedMarkSize]); err == nil && i == index {
				var re [appliedMarkSize]byte
				encodeAppliedMark(&re, index)
				if string(re[:]) != string(data[off:off+appliedMarkSize]) {
					t.Fatalf("slot at %d decodes to %d but does not re-encode to itself", off, index)
				}
				return
			}
		}
		t.Fatalf("decoded index %d from %x, which no valid slot holds", index, data)
	})
}
