package ranges

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// FuzzDescriptor: Unmarshal never panics, fails only with ErrCorrupt or
// ErrInvalid, and what it accepts is Valid and re-encodes to the same bytes
// (the encoding is canonical).
func FuzzDescriptor(f *testing.F) {
	f.Add(desc(7, "", "key5", 3).Marshal())
	f.Add(desc(1, "", "", 1).Marshal())
	f.Add(Descriptor{ID: 2, Start: []byte("a"), Replicas: []Replica{{"n1", 9, false}, {"n2", 3, true}}}.Marshal())
	f.Add([]byte{1, 0x80, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Unmarshal error %v wraps neither ErrCorrupt nor ErrInvalid", err)
			}
			return
		}
		if err := d.Valid(); err != nil {
			t.Fatalf("Unmarshal accepted an invalid descriptor: %v", err)
		}
		if again := d.Marshal(); !bytes.Equal(again, b) {
			t.Fatalf("Marshal(Unmarshal(%x)) = %x", b, again)
		}
	})
}

// FuzzDescriptorRoundTrip builds a descriptor from fuzzed fields: if it is
// Valid it survives Marshal and Unmarshal unchanged.
func FuzzDescriptorRoundTrip(f *testing.F) {
	f.Add(uint64(7), uint64(3), []byte(""), []byte("key5"), "n1", uint64(1), "n2", uint64(2), true)
	f.Add(uint64(1), uint64(1), []byte("a"), []byte(""), "n1", uint64(1), "n1", uint64(1), false)
	f.Fuzz(func(t *testing.T, id, gen uint64, start, end []byte, n1 string, r1 uint64, n2 string, r2 uint64, learner bool) {
		d := Descriptor{ID: id, Generation: gen, Start: start, End: end,
			Replicas: []Replica{{n1, r1, false}, {n2, r2, learner}}}
		if d.Valid() != nil {
			return
		}
		got, err := Unmarshal(d.Marshal())
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%+v)) = %v", d, err)
		}
		if !got.Equal(d) {
			t.Fatalf("round trip: %+v became %+v", d, got)
		}
	})
}

// FuzzDirectory: UnmarshalDirectory never panics and what it accepts
// re-encodes to the same bytes.
func FuzzDirectory(f *testing.F) {
	dir, _ := NewDirectory(desc(1, "", "c", 1), desc(2, "c", "", 1))
	f.Add(dir.Marshal())
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir, err := UnmarshalDirectory(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("UnmarshalDirectory error %v wraps neither ErrCorrupt nor ErrInvalid", err)
			}
			return
		}
		if again := dir.Marshal(); !bytes.Equal(again, b) {
			t.Fatalf("Marshal(UnmarshalDirectory(%x)) = %x", b, again)
		}
		// Check either passes or names a problem; it never panics.
		_ = dir.Check()
		for _, d := range dir.All() {
			if got, ok := dir.Get(d.ID); !ok || !got.Equal(d) {
				t.Fatalf("Get(%d) = %v, %v", d.ID, got, ok)
			}
		}
	})
}

// FuzzToken: DecodeToken never panics, a token it accepts is the one
// EncodeToken makes of what it decodes to, and a token EncodeToken made from
// any key and revision decodes to the key right after it and the revision.
func FuzzToken(f *testing.F) {
	f.Add("AWtleTUA", []byte("key5"), int64(0))
	f.Add("AgdrZXk1AA", []byte("key5"), int64(7))
	f.Add("", []byte{}, int64(1))
	f.Add("AQ", []byte{0xff}, int64(-1))
	f.Fuzz(func(t *testing.T, tok string, last []byte, rev int64) {
		if resume, r, err := DecodeToken(tok); err == nil {
			if len(resume) == 0 || resume[len(resume)-1] != 0 || r < 0 {
				t.Fatalf("DecodeToken(%q) = %q at %d", tok, resume, r)
			}
			if again := EncodeToken(resume[:len(resume)-1], r); again != tok {
				t.Fatalf("EncodeToken(DecodeToken(%q)) = %q", tok, again)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeToken error %v does not wrap ErrCorrupt", err)
		}
		if len(last) > maxTokenKey {
			return
		}
		rev = max(rev, 0)
		resume, r, err := DecodeToken(EncodeToken(last, rev))
		if err != nil || !slices.Equal(resume, append(slices.Clone(last), 0)) || r != rev {
			t.Fatalf("DecodeToken(EncodeToken(%q, %d)) = %q, %d, %v", last, rev, resume, r, err)
		}
	})
}
