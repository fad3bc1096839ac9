package snap

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// fuzzSeeds are small valid streams; testdata/fuzz/FuzzDecode holds them and some
// damaged variants.
func fuzzSeeds(t testing.TB) [][]byte {
	pairs := []kv.KeyValue{
		{Key: []byte("a"), Value: []byte("1"), Version: 1, Revision: 1, CreateRevision: 1},
		{Key: []byte("b"), Value: bytes.Repeat([]byte("xy"), 40), Version: 3, Revision: 7, CreateRevision: 2},
		{Key: []byte("b\xff"), Value: nil, Version: 1, Revision: 8, CreateRevision: 8},
	}
	return [][]byte{
		encode(t, Meta{Shard: 1, Index: 9, Term: 2, Extra: []byte("conf")}, pairs),
		encode(t, Meta{Shard: 7, Index: 0}, nil),
	}
}

// FuzzDecode feeds Decode arbitrary bytes: it must never panic, must report
// damage as ErrCorrupt, must not allocate beyond its bounds, and whatever it
// accepts must survive a round trip through Encode.
func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// With the checksums made right, mutations of the body reach the
		// structural checks and may even be accepted.
		checkDecode(t, reseal(b))
	})
}

func checkDecode(t *testing.T, b []byte) {
	var before, after runtimeMem
	before.read()
	meta, pairs, err := decodeAll(b)
	after.read()
	delivered := uint64(0)
	for _, p := range pairs {
		delivered += uint64(len(p.Key) + len(p.Value))
	}
	// Decoder state, one pair's worth of buffers, and the pairs handed over.
	if bound := uint64(64<<20+2*(MaxKey+MaxValue)) + 3*delivered; after.total-before.total > bound {
		t.Fatalf("Decode of %d bytes allocated %d bytes (bound %d)", len(b), after.total-before.total, bound)
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
		}
		return
	}
	if m, err := DecodeMeta(bytes.NewReader(b)); err != nil || !equalMeta(m, meta) {
		t.Fatalf("DecodeMeta = %+v, %v; Decode said %+v", m, err, meta)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, meta, slices.Values(pairs)); err != nil {
		t.Fatalf("re-encoding what Decode accepted: %v", err)
	}
	meta2, pairs2, err := decodeAll(buf.Bytes())
	if err != nil || !equalMeta(meta2, meta) {
		t.Fatalf("decoding the re-encoding: %+v, %v; want %+v", meta2, err, meta)
	}
	checkPairs(t, pairs2, pairs)
}

// FuzzDecodeSealed feeds a store with a Cipher arbitrary bytes as a snapshot
// file: it must never panic, and must refuse anything but a file it sealed
// with ErrCorrupt or a key error (crypt.ErrWrongKey for a data key it lacks,
// crypt.ErrNotEncrypted for a file in the clear), never a misread.
func FuzzDecodeSealed(f *testing.F) {
	master, err := crypt.ParseMasterKey(bytes.Repeat([]byte{0x33}, crypt.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	c, err := crypt.Create(vfs.Default, f.TempDir(), master)
	if err != nil {
		f.Fatal(err)
	}
	s := &Store{cipher: c}
	var sealed [][]byte
	for _, plain := range fuzzSeeds(f) {
		var buf bytes.Buffer
		w, err := s.sealer(&buf)
		if err != nil {
			f.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		sealed = append(sealed, buf.Bytes())
		f.Add(buf.Bytes())
		f.Add(plain)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var meta Meta
		r, err := s.opener(bytes.NewReader(b))
		if err == nil {
			meta, err = Decode(r, func(kv.KeyValue) error { return nil })
		}
		if err == nil {
			if !slices.ContainsFunc(sealed, func(s []byte) bool { return bytes.Equal(s, b) }) {
				t.Fatalf("made-up bytes decoded as a sealed snapshot (%+v)", meta)
			}
			return
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, crypt.ErrWrongKey) && !errors.Is(err, crypt.ErrNotEncrypted) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
