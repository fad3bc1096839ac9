package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/distkv/distkv/internal/kv"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: from the clock)")

func testRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (reproduce with -seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 0x5eed))
}

// genPairs returns n valid pairs in key order, all with revisions <= index n+1.
// Values vary in size and are partly compressible, like real ones.
func genPairs(rng *rand.Rand, n, maxValue int) []kv.KeyValue {
	words := []string{"alpha", "beta", "gamma", "delta", "user", "order", "{\"id\":", "\"name\":", "true", "42"}
	pairs := make([]kv.KeyValue, n)
	for i := range pairs {
		var v []byte
		for size := rng.IntN(maxValue + 1); len(v) < size; {
			if rng.IntN(4) == 0 {
				v = append(v, byte(rng.Uint32()))
			} else {
				v = append(v, words[rng.IntN(len(words))]...)
			}
		}
		create := int64(1 + rng.IntN(n+1))
		pairs[i] = kv.KeyValue{
			Key:            fmt.Appendf(nil, "user/%08d/%s", i, words[rng.IntN(len(words))]),
			Value:          v,
			Version:        int64(1 + rng.IntN(5)),
			CreateRevision: create,
			Revision:       create + int64(rng.IntN(n+2-int(create))),
		}
	}
	return pairs
}

func encode(t testing.TB, meta Meta, pairs []kv.KeyValue) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, meta, slices.Values(pairs)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodeAll(b []byte) (Meta, []kv.KeyValue, error) {
	var got []kv.KeyValue
	meta, err := Decode(bytes.NewReader(b), func(p kv.KeyValue) error {
		got = append(got, p)
		return nil
	})
	return meta, got, err
}

func equalKV(a, b kv.KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Revision == b.Revision && a.CreateRevision == b.CreateRevision
}

func equalMeta(a, b Meta) bool {
	return a.Shard == b.Shard && a.Index == b.Index && a.Term == b.Term && bytes.Equal(a.Extra, b.Extra)
}

func checkPairs(t testing.TB, got, want []kv.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d pairs, want %d", len(got), len(want))
	}
	for i := range want {
		if !equalKV(got[i], want[i]) {
			t.Fatalf("pair %d: got %q v%d r%d c%d, want %q v%d r%d c%d", i,
				got[i].Key, got[i].Version, got[i].Revision, got[i].CreateRevision,
				want[i].Key, want[i].Version, want[i].Revision, want[i].CreateRevision)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	rng := testRand(t)
	big := make([]byte, 3<<20) // incompressible, so it spans several chunks
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name  string
		meta  Meta
		pairs []kv.KeyValue
	}{
		{"empty", Meta{Shard: 1, Index: 0, Term: 0}, nil},
		{"empty with extra", Meta{Shard: 1 << 60, Index: 7, Term: 3, Extra: []byte("conf state")}, nil},
		{"one pair, empty key and value", Meta{Shard: 2, Index: 1, Term: 1}, []kv.KeyValue{{Key: []byte{}, Value: []byte{}, Version: 1, Revision: 1, CreateRevision: 1}}},
		{"100k pairs", Meta{Shard: 3, Index: 100_001, Term: 9, Extra: bytes.Repeat([]byte{0xff}, 300)}, genPairs(rng, 100_000, 300)},
		{"big value", Meta{Shard: 4, Index: 10, Term: 2}, []kv.KeyValue{
			{Key: []byte("a"), Value: big, Version: 1, Revision: 10, CreateRevision: 10},
			{Key: []byte("b"), Value: []byte("small"), Version: 2, Revision: 9, CreateRevision: 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encode(t, tt.meta, tt.pairs)
			meta, got, err := decodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if !equalMeta(meta, tt.meta) {
				t.Fatalf("meta = %+v, want %+v", meta, tt.meta)
			}
			checkPairs(t, got, tt.pairs)
			for _, p := range got {
				if cap(p.Key) != len(p.Key) {
					t.Fatalf("decoded key %q has spare capacity", p.Key)
				}
			}
			if m, err := DecodeMeta(bytes.NewReader(b)); err != nil || !equalMeta(m, tt.meta) {
				t.Fatalf("DecodeMeta = %+v, %v", m, err)
			}
			t.Logf("%d pairs in %d bytes", len(tt.pairs), len(b))
		})
	}
}

// TestDecodeDamage damages a snapshot in every way a disk or network can and
// expects ErrCorrupt every time: never a panic, never success with fewer pairs.
func TestDecodeDamage(t *testing.T) {
	rng := testRand(t)
	small := encode(t, Meta{Shard: 1, Index: 60, Term: 2, Extra: []byte("cs")}, genPairs(rng, 50, 40))
	// A bigger stream with several chunks, so cuts fall inside and between them.
	pairs := genPairs(rng, 300, 5000)
	for i := range pairs[:100] {
		pairs[i].Value = binary.LittleEndian.AppendUint64(pairs[i].Value, rng.Uint64())
	}
	large := encode(t, Meta{Shard: 1, Index: 310, Term: 2}, pairs)
	if len(large) < 2*maxChunk/8 {
		t.Logf("large stream is only %d bytes", len(large))
	}

	expectCorrupt := func(t *testing.T, what string, b []byte) {
		t.Helper()
		_, got, err := decodeAll(b)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Decode = %d pairs, %v; want ErrCorrupt", what, len(got), err)
		}
	}

	t.Run("truncated at every offset", func(t *testing.T) {
		for i := range len(small) {
			expectCorrupt(t, fmt.Sprintf("cut at %d of %d", i, len(small)), small[:i])
		}
	})
	t.Run("truncated at many offsets", func(t *testing.T) {
		for i := 0; i < len(large); i += 1 + rng.IntN(len(large)/200) {
			expectCorrupt(t, fmt.Sprintf("cut at %d of %d", i, len(large)), large[:i])
		}
		for i := len(large) - 40; i < len(large); i++ {
			expectCorrupt(t, fmt.Sprintf("cut at %d of %d", i, len(large)), large[:i])
		}
	})
	t.Run("bit flipped at every offset", func(t *testing.T) {
		for i := range len(small) {
			b := slices.Clone(small)
			b[i] ^= 1 << rng.IntN(8)
			expectCorrupt(t, fmt.Sprintf("flip at %d", i), b)
		}
	})
	t.Run("bit flipped at random offsets", func(t *testing.T) {
		for range 300 {
			b := slices.Clone(large)
			i := rng.IntN(len(b))
			b[i] ^= 1 << rng.IntN(8)
			expectCorrupt(t, fmt.Sprintf("flip at %d", i), b)
		}
	})
	t.Run("trailing data", func(t *testing.T) {
		expectCorrupt(t, "one more byte", append(slices.Clone(small), 0))
		expectCorrupt(t, "a second snapshot", append(slices.Clone(small), small...))
	})
	t.Run("garbage", func(t *testing.T) {
		expectCorrupt(t, "nil", nil)
		expectCorrupt(t, "text", []byte(strings.Repeat("not a snapshot ", 10)))
		b := slices.Clone(small)
		b[len(magic)] = 2
		expectCorrupt(t, "format version 2", b)
	})
}

// reseal recomputes both checksums of a stream, so tests and the fuzzer can build
// streams whose damage only the structural checks can catch.
func reseal(b []byte) []byte {
	b = slices.Clone(b)
	if len(b) >= headerFixed+4 {
		extra := int(binary.LittleEndian.Uint32(b[headerFixed-4:]))
		if end := headerFixed + extra; extra <= MaxExtra && end+4 <= len(b) {
			binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
		}
	}
	if len(b) >= 4 {
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	}
	return b
}

func TestDecodeStructuralDamage(t *testing.T) {
	meta := Meta{Shard: 1, Index: 5}
	good := encode(t, meta, []kv.KeyValue{{Key: []byte("a"), Value: []byte("1"), Version: 1, Revision: 1, CreateRevision: 1}})
	if _, _, err := decodeAll(reseal(good)); err != nil {
		t.Fatalf("reseal broke a good stream: %v", err)
	}
	// Build a body by hand: one chunk holding a zstd stream of raw records.
	stream := func(records []byte, count uint64, trailing []byte) []byte {
		var body bytes.Buffer
		cw := &chunkWriter{w: &body}
		zw := newTestEncoder(t, cw)
		zw.Write(records)
		zw.Close()
		cw.close()
		b := appendHeader(nil, meta)
		b = append(b, body.Bytes()...)
		b = binary.LittleEndian.AppendUint64(b, count)
		b = binary.LittleEndian.AppendUint32(b, 0)
		return append(reseal(b), trailing...)
	}
	varints := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	rec := func(key, value string, version, rev, create uint64) []byte {
		b := varints(uint64(len(key)), uint64(len(value)), version, rev, create)
		return append(append(b, key...), value...)
	}
	ok := rec("a", "1", 1, 1, 1)
	if _, got, err := decodeAll(stream(ok, 1, nil)); err != nil || len(got) != 1 {
		t.Fatalf("hand-built stream: %d pairs, %v", len(got), err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"count too high", stream(ok, 2, nil), "trailer counts 2 pairs"},
		{"count too low", stream(ok, 0, nil), "trailer counts 0 pairs"},
		{"keys out of order", stream(append(rec("b", "", 1, 1, 1), ok...), 2, nil), "before"},
		{"version 0", stream(rec("a", "", 0, 1, 1), 1, nil), "bad metadata"},
		{"revision before creation", stream(rec("a", "", 1, 1, 2), 1, nil), "bad metadata"},
		{"revision beyond int64", stream(rec("a", "", 1, 1<<63, 1), 1, nil), "beyond int64"},
		{"key too long", stream(varints(MaxKey+1, 0, 1, 1, 1), 1, nil), "out of bounds"},
		{"value too long", stream(varints(1, MaxValue+1, 1, 1, 1), 1, nil), "out of bounds"},
		{"value longer than the data", stream(rec("a", "1", 1, 1, 1)[:6], 1, nil), "truncated pair 0"},
		{"record cut in its header", stream(ok[:2], 1, nil), "truncated pair 0"},
		{"trailing data", stream(ok, 1, []byte{1}), "after the trailer"},
	} {
		_, got, err := decodeAll(tc.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %d pairs, %v; want ErrCorrupt mentioning %q", tc.name, len(got), err, tc.want)
		}
	}

	// A chunk that claims more than the maximum.
	b := appendHeader(nil, meta)
	b = binary.LittleEndian.AppendUint32(b, maxChunk+1)
	b = append(b, make([]byte, 64)...)
	if _, _, err := decodeAll(reseal(b)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "chunk length") {
		t.Errorf("oversized chunk: %v", err)
	}
	// A hostile extra length.
	h := appendHeader(nil, Meta{Extra: []byte("x")})
	binary.LittleEndian.PutUint32(h[headerFixed-4:], MaxExtra+1)
	if _, err := DecodeMeta(bytes.NewReader(reseal(h))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("oversized extra: %v", err)
	}
}

// TestVersionsOfAKey: pairs may share a key (package kv writes a key's
// retired versions before its latest), and come back in the order written.
func TestVersionsOfAKey(t *testing.T) {
	pairs := []kv.KeyValue{
		{Key: []byte("a"), Value: []byte("1"), Version: 1, Revision: 2, CreateRevision: 2},
		{Key: []byte("a"), Value: []byte("2"), Version: 2, Revision: 3, CreateRevision: 2},
		{Key: []byte("b"), Value: []byte("3"), Version: 1, Revision: 4, CreateRevision: 4},
	}
	b := encode(t, Meta{Shard: 1, Index: 9}, pairs)
	_, got, err := decodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pairs) {
		t.Fatalf("%d pairs back, want %d", len(got), len(pairs))
	}
	for i := range pairs {
		if string(got[i].Key) != string(pairs[i].Key) || string(got[i].Value) != string(pairs[i].Value) || got[i].Version != pairs[i].Version {
			t.Errorf("pair %d: %+v, want %+v", i, got[i], pairs[i])
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	p := func(key string, version, rev, create int64) kv.KeyValue {
		return kv.KeyValue{Key: []byte(key), Version: version, Revision: rev, CreateRevision: create}
	}
	for _, tc := range []struct {
		name  string
		meta  Meta
		pairs []kv.KeyValue
	}{
		{"out of order", Meta{Index: 9}, []kv.KeyValue{p("b", 1, 1, 1), p("a", 1, 1, 1)}},
		{"key too long", Meta{Index: 9}, []kv.KeyValue{p(strings.Repeat("k", MaxKey+1), 1, 1, 1)}},
		{"version 0", Meta{Index: 9}, []kv.KeyValue{p("a", 0, 1, 1)}},
		{"negative revision", Meta{Index: 9}, []kv.KeyValue{p("a", 1, -1, -1)}},
		{"extra too big", Meta{Extra: make([]byte, MaxExtra+1)}, nil},
		{"index beyond int64", Meta{Index: 1 << 63}, nil},
	} {
		if err := Encode(io.Discard, tc.meta, slices.Values(tc.pairs)); err == nil {
			t.Errorf("%s: Encode succeeded", tc.name)
		}
	}
}

type failingReader struct {
	r     io.Reader
	after int
	err   error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.after)]
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func TestDecodeErrorsThatAreNotDamage(t *testing.T) {
	rng := testRand(t)
	b := encode(t, Meta{Shard: 1, Index: 201}, genPairs(rng, 200, 100))

	errDisk := errors.New("disk on fire")
	for _, at := range []int{0, 10, headerFixed + 10, len(b) / 2, len(b) - 2} {
		_, err := Decode(&failingReader{r: bytes.NewReader(b), after: at, err: errDisk}, func(kv.KeyValue) error { return nil })
		if !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
			t.Errorf("read error after %d bytes: %v; want the read error, not ErrCorrupt", at, err)
		}
	}

	errStop := errors.New("stop")
	n := 0
	_, err := Decode(bytes.NewReader(b), func(kv.KeyValue) error {
		if n++; n == 10 {
			return errStop
		}
		return nil
	})
	if err != errStop || n != 10 {
		t.Errorf("fn error: %v after %d pairs; want it returned as is after 10", err, n)
	}
}

func TestDecodeDoesNotTrustLengths(t *testing.T) {
	// A record claiming a 64 MiB value backed by a few bytes must not make Decode
	// allocate 64 MiB.
	var rec []byte
	for _, v := range []uint64{1, MaxValue, 1, 1, 1} {
		rec = binary.AppendUvarint(rec, v)
	}
	rec = append(rec, "kv"...)
	var body bytes.Buffer
	cw := &chunkWriter{w: &body}
	zw := newTestEncoder(t, cw)
	zw.Write(rec)
	zw.Close()
	cw.close()
	b := append(appendHeader(nil, Meta{Index: 1}), body.Bytes()...)
	b = reseal(append(b, make([]byte, 12)...))

	allocs := testing.AllocsPerRun(5, func() { decodeAll(b) })
	var before, after runtimeMem
	before.read()
	_, _, err := decodeAll(b)
	after.read()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if grown := after.total - before.total; grown > 16<<20 {
		t.Fatalf("decoding a tiny hostile stream allocated %d bytes (%.0f allocs)", grown, allocs)
	}
}

func newTestEncoder(t testing.TB, w io.Writer) *zstd.Encoder {
	t.Helper()
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	return zw
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	m.total = st.TotalAlloc
}

// Snapshots share one kept zstd encoder: each stream must still be whole and
// independent of the ones before it, also after an Encode that failed midway.
func TestEncodeReusesEncoderCleanly(t *testing.T) {
	rng := testRand(t)
	a, b := genPairs(rng, 500, 2000), genPairs(rng, 50, 300000)
	meta := func(pairs []kv.KeyValue) Meta { return Meta{Shard: 1, Index: uint64(len(pairs) + 1), Term: 2} }
	first := encode(t, meta(a), a)
	encode(t, meta(b), b)
	// An Encode that stops with an error (keys out of order) in between.
	bad := []kv.KeyValue{a[1], a[0]}
	if err := Encode(io.Discard, meta(a), slices.Values(bad)); err == nil {
		t.Fatal("Encode of unordered keys succeeded")
	}
	again := encode(t, meta(a), a)
	if !bytes.Equal(first, again) {
		t.Fatalf("encoding the same snapshot again after others gave different bytes (%d vs %d)", len(first), len(again))
	}
	for _, tc := range []struct {
		name  string
		pairs []kv.KeyValue
		b     []byte
	}{{"first", a, first}, {"again", a, again}, {"second", b, encode(t, meta(b), b)}} {
		_, got, err := decodeAll(tc.b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != len(tc.pairs) {
			t.Fatalf("%s: %d pairs decoded, want %d", tc.name, len(got), len(tc.pairs))
		}
		for i := range got {
			if !equalKV(got[i], tc.pairs[i]) {
				t.Fatalf("%s: pair %d differs", tc.name, i)
			}
		}
	}
}
