package ranges

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustDir(t *testing.T, descs ...Descriptor) *Directory {
	t.Helper()
	dir, err := NewDirectory(descs...)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func ids(ds []Descriptor) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func TestDirectoryLookup(t *testing.T) {
	dir := mustDir(t, desc(3, "m", "t", 1), desc(1, "", "c", 1), desc(4, "t", "", 1), desc(2, "c", "m", 1))
	if err := dir.Check(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]uint64{
		"": 1, "a": 1, "b\xff": 1, "c": 2, "l": 2, "m": 3, "s": 3, "t": 4, "\xff\xff": 4,
	} {
		d, ok := dir.Lookup([]byte(key))
		if !ok || d.ID != want {
			t.Errorf("Lookup(%q) = %v, %v; want range %d", key, d, ok, want)
		}
	}
	if got := ids(dir.All()); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Errorf("All() = %v, want key order 1 2 3 4", got)
	}
	// A key in a gap has no range.
	gappy := mustDir(t, desc(1, "", "c", 1), desc(2, "e", "", 1))
	if d, ok := gappy.Lookup([]byte("d")); ok {
		t.Errorf("Lookup in a gap = %v, want a miss", d)
	}
}

func TestNewDirectoryRefuses(t *testing.T) {
	if _, err := NewDirectory(desc(1, "", "c", 1), desc(1, "c", "", 1)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "range id 1 appears twice") {
		t.Errorf("duplicate id: %v", err)
	}
	if _, err := NewDirectory(desc(1, "d", "c", 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid descriptor: %v", err)
	}
}

func TestDirectoryCheck(t *testing.T) {
	tests := []struct {
		name  string
		descs []Descriptor
		want  []string // substrings of the error; none for a tiling
	}{
		{"one range", []Descriptor{desc(1, "", "", 1)}, nil},
		{"three ranges", []Descriptor{desc(1, "", "c", 1), desc(2, "c", "f", 1), desc(3, "f", "", 1)}, nil},
		{"empty", nil, []string{"holds no range"}},
		{"missing beginning", []Descriptor{desc(5, "b", "", 1)}, []string{`keys before r5["b", end)`}},
		{"missing end", []Descriptor{desc(5, "", "x", 1)}, []string{`from "x" on, after r5["", "x")`}},
		{"gap", []Descriptor{desc(1, "", "c", 1), desc(2, "e", "", 1)},
			[]string{`no range holds ["c", "e") between r1["", "c") gen 1 and r2["e", end) gen 1`}},
		{"overlap", []Descriptor{desc(1, "", "f", 1), desc(2, "e", "", 2)},
			[]string{`r1["", "f") gen 1 overlaps r2["e", end) gen 2`}},
		{"open range before another", []Descriptor{desc(1, "", "", 1), desc(2, "e", "", 2)},
			[]string{`r1["", end) gen 1 overlaps r2["e", end) gen 2`}},
		{"same start", []Descriptor{desc(1, "", "c", 1), desc(2, "", "", 1)}, []string{"r1", "overlaps", "r2"}},
		{"two problems named", []Descriptor{desc(1, "", "c", 1), desc(2, "d", "g", 1), desc(3, "f", "", 1)},
			[]string{`["c", "d")`, `r2["d", "g") gen 1 overlaps r3["f", end) gen 1`}},
	}
	for _, tt := range tests {
		err := mustDir(t, tt.descs...).Check()
		if tt.want == nil {
			if err != nil {
				t.Errorf("%s: Check() = %v", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Check() = %v, want ErrInvalid", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Check() = %v, want it to say %q", tt.name, err, w)
			}
		}
	}
}

func TestDirectorySplit(t *testing.T) {
	dir := mustDir(t, First(1, reps("n1", "n2", "n3")))
	left, right, err := dir.Split(1, []byte("m"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if !left.Equal(desc(1, "", "m", 2)) || !right.Equal(desc(2, "m", "", 2)) {
		t.Fatalf("Split = %v, %v", left, right)
	}
	if err := dir.Check(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dir.Split(2, []byte("t"), 3); err != nil {
		t.Fatal(err)
	}
	if got := ids(dir.All()); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("after two splits: %v", got)
	}
	if d, _ := dir.Lookup([]byte("u")); d.ID != 3 || d.Generation != 3 {
		t.Fatalf("Lookup(u) = %v, want r3 at generation 3", d)
	}

	before := dir.Marshal()
	for _, tt := range []struct {
		id    uint64
		key   string
		newID uint64
		want  error
	}{
		{9, "b", 10, ErrNotFound},
		{1, "b", 2, ErrInvalid},  // id taken
		{1, "m", 10, ErrInvalid}, // the range's end
		{2, "m", 10, ErrInvalid}, // the range's start
		{1, "", 10, ErrInvalid},
	} {
		if _, _, err := dir.Split(tt.id, []byte(tt.key), tt.newID); !errors.Is(err, tt.want) {
			t.Errorf("Split(%d, %q, %d) = %v, want %v", tt.id, tt.key, tt.newID, err, tt.want)
		}
	}
	if after := dir.Marshal(); string(after) != string(before) {
		t.Fatal("a refused split changed the directory")
	}
}

func TestDirectoryReplace(t *testing.T) {
	dir := mustDir(t, desc(1, "", "m", 4), desc(2, "m", "", 4))
	moved := desc(2, "m", "", 5)
	moved.Replicas = []Replica{{"n1", 1, false}, {"n2", 2, false}, {"n4", 4, true}}
	if err := dir.Replace(moved); err != nil {
		t.Fatal(err)
	}
	if d, _ := dir.Get(2); !d.Equal(moved) {
		t.Fatalf("after Replace: %v", d)
	}
	if err := dir.Replace(desc(2, "m", "", 5)); !errors.Is(err, ErrStale) {
		t.Errorf("same generation: %v, want ErrStale", err)
	}
	if err := dir.Replace(desc(2, "m", "", 3)); !errors.Is(err, ErrStale) {
		t.Errorf("older generation: %v, want ErrStale", err)
	}
	if err := dir.Replace(desc(2, "n", "", 9)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cannot move the bounds") {
		t.Errorf("moved bounds: %v, want ErrInvalid", err)
	}
	if err := dir.Replace(desc(3, "m", "", 9)); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown range: %v, want ErrNotFound", err)
	}
	if d, _ := dir.Get(2); !d.Equal(moved) {
		t.Fatalf("a refused Replace changed the range: %v", d)
	}
}

func TestDirectoryRanges(t *testing.T) {
	dir := mustDir(t, desc(1, "", "c", 1), desc(2, "c", "f", 1), desc(3, "f", "", 1))
	for from, want := range map[string][]uint64{
		"": {1, 2, 3}, "b": {1, 2, 3}, "c": {2, 3}, "d": {2, 3}, "f": {3}, "zz": {3},
	} {
		if got := ids(slices.Collect(dir.Ranges([]byte(from)))); !slices.Equal(got, want) {
			t.Errorf("Ranges(%q) = %v, want %v", from, got, want)
		}
	}
	// Stopping early stops.
	var n int
	for range dir.Ranges(nil) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after one range: yielded %d", n)
	}
	// From a gap, the walk starts at the next range.
	gappy := mustDir(t, desc(1, "", "c", 1), desc(2, "e", "", 1))
	if got := ids(slices.Collect(gappy.Ranges([]byte("d")))); !slices.Equal(got, []uint64{2}) {
		t.Errorf("Ranges from a gap = %v, want [2]", got)
	}
}

// TestDirectoryRandomSplits splits at random keys and checks after every
// split that the directory tiles the key space, every key is found in the
// range that holds it, the encoding round-trips, and a walk from any key
// visits ranges in order.
func TestDirectoryRandomSplits(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := mustDir(t, First(1, reps("n1", "n2", "n3")))
	key := func() []byte { return fmt.Appendf(nil, "k%03d", rng.IntN(1000)) }
	for next := uint64(2); next < 200; {
		k := key()
		d, ok := dir.Lookup(k)
		if !ok {
			t.Fatalf("Lookup(%q) missed", k)
		}
		gen := d.Generation
		left, right, err := dir.Split(d.ID, k, next)
		if string(k) == string(d.Start) {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("split at the start of %v: %v", d, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Split(%v at %q): %v", d, k, err)
		}
		next++
		if left.Generation != gen+1 || right.Generation != gen+1 {
			t.Fatalf("generations after split of %v: %d, %d", d, left.Generation, right.Generation)
		}
		if err := dir.Check(); err != nil {
			t.Fatal(err)
		}
		again, err := UnmarshalDirectory(dir.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(again.All(), dir.All(), Descriptor.Equal) {
			t.Fatal("directory encoding does not round-trip")
		}
		from := key()
		prev := Descriptor{}
		for i, r := range slices.Collect(dir.Ranges(from)) {
			if i == 0 && !r.Contains(from) {
				t.Fatalf("walk from %q starts at %v", from, r)
			}
			if i > 0 && string(prev.End) != string(r.Start) {
				t.Fatalf("walk from %q: %v then %v", from, prev, r)
			}
			prev = r
		}
	}
	if dir.Len() != 199 {
		t.Fatalf("%d ranges after 198 splits", dir.Len())
	}
}

func TestUnmarshalDirectoryErrors(t *testing.T) {
	dir := mustDir(t, desc(1, "", "c", 1), desc(2, "c", "", 1))
	good := dir.Marshal()
	d1, d2 := desc(1, "", "c", 1).Marshal(), desc(2, "c", "", 1).Marshal()
	outOfOrder := []byte{1, 2, byte(len(d2))}
	outOfOrder = append(append(append(outOfOrder, d2...), byte(len(d1))), d1...)
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "input ends before version"},
		{"version", append([]byte{9}, good[1:]...), "directory version 9"},
		{"truncated", good[:len(good)-2], "runs past the end"},
		{"trailing", append(slices.Clone(good), 7), "1 bytes after the directory"},
		{"count too large", []byte{1, 0xff, 0x01}, "ranges cannot fit"},
		{"bad descriptor", []byte{1, 1, 7, 5, 0, 0, 0, 0, 0, 0}, "range 1 of 1 at byte 2: corrupt range encoding: at byte 0: descriptor version 5"},
		{"out of order", outOfOrder, "not in key order"},
	}
	for _, tt := range tests {
		if _, err := UnmarshalDirectory(tt.b); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: UnmarshalDirectory = %v, want ErrCorrupt saying %q", tt.name, err, tt.want)
		}
	}
	dup := []byte{1, 2, byte(len(d1))}
	dup = append(append(append(dup, d1...), byte(len(d1))), d1...)
	if _, err := UnmarshalDirectory(dup); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("duplicate range: %v", err)
	}
}
