package backup

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
)

func testPairs(n int) iter.Seq2[kv.KeyValue, error] {
	return func(yield func(kv.KeyValue, error) bool) {
		for i := range n {
			p := kv.KeyValue{Key: fmt.Appendf(nil, "k%05d", i), Value: fmt.Appendf(nil, "v%d", i),
				Version: 1, Revision: int64(i + 1), CreateRevision: int64(i + 1)}
			if !yield(p, nil) {
				return
			}
		}
	}
}

// TestWriteCutShort: a source that fails ends the stream before its
// trailer: what was written does not verify as a backup.
func TestWriteCutShort(t *testing.T) {
	h, err := NewHeader(1, 100000, 0xabc, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	failing := func(yield func(kv.KeyValue, error) bool) {
		for p, err := range testPairs(500) {
			if !yield(p, err) {
				return
			}
		}
		yield(kv.KeyValue{}, errors.New("a range did not answer"))
	}
	var buf bytes.Buffer
	if _, err := Write(&buf, h, failing); err == nil || !strings.Contains(err.Error(), "a range did not answer") {
		t.Fatalf("Write with a failing source: %v", err)
	}
	if _, err := Verify(bytes.NewReader(buf.Bytes()), nil); err == nil {
		t.Fatalf("a backup cut short verifies (%d bytes)", buf.Len())
	}
}

func encode(t testing.TB, n int) ([]byte, Header) {
	t.Helper()
	h, err := NewHeader(1, 100000, 0xabc, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	got, err := Write(&buf, h, testPairs(n))
	if err != nil {
		t.Fatal(err)
	}
	if got != uint64(n) {
		t.Fatalf("Write counted %d pairs, want %d", got, n)
	}
	return buf.Bytes(), h
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 100, 5000} {
		b, h := encode(t, n)
		var got []kv.KeyValue
		gh, err := Decode(bytes.NewReader(b), func(p kv.KeyValue) error { got = append(got, p); return nil })
		if err != nil {
			t.Fatalf("%d pairs: %v", n, err)
		}
		if gh.Revision != h.Revision || gh.ClusterID != h.ClusterID || gh.Nonce != h.Nonce || !gh.Created.Equal(h.Created) || gh.Shard != 1 {
			t.Fatalf("header %+v, want %+v", gh, h)
		}
		i := 0
		for p := range testPairs(n) {
			if !bytes.Equal(got[i].Key, p.Key) || !bytes.Equal(got[i].Value, p.Value) || got[i].Revision != p.Revision {
				t.Fatalf("pair %d = %+v, want %+v", i, got[i], p)
			}
			i++
		}
		if i != len(got) {
			t.Fatalf("got %d pairs, want %d", len(got), i)
		}
		s, err := Verify(bytes.NewReader(b), nil)
		if err != nil || s.Pairs != uint64(n) || s.Bytes != int64(len(b)) {
			t.Fatalf("Verify = %+v, %v", s, err)
		}
	}
}

func TestTruncatedRefused(t *testing.T) {
	b, _ := encode(t, 300)
	for i := range len(b) {
		if _, err := Verify(bytes.NewReader(b[:i]), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d of %d: err %v, want ErrCorrupt", i, len(b), err)
		}
	}
}

func TestAlteredRefused(t *testing.T) {
	b, _ := encode(t, 300)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range len(b) {
		c := bytes.Clone(b)
		c[i] ^= byte(1 + r.IntN(255))
		if _, err := Verify(bytes.NewReader(c), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d of %d altered: err %v, want ErrCorrupt", i, len(b), err)
		}
	}
	if _, err := Verify(bytes.NewReader(append(bytes.Clone(b), 0)), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte appended: err %v, want ErrCorrupt", err)
	}
}

func TestSnapshotFileIsNoBackup(t *testing.T) {
	var buf bytes.Buffer
	if err := snap.Encode(&buf, snap.Meta{Shard: 1, Index: 10, Term: 2, Extra: []byte(`{"conf_state":{}}`)}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(&buf, nil)
	if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("not a distkv backup")) {
		t.Fatalf("err %v, want a refusal naming it no backup", err)
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := encode(f, 20)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_, err := Decode(bytes.NewReader(data), func(kv.KeyValue) error { n++; return nil })
		if err == nil {
			// What decodes must verify the same.
			s, err := Verify(bytes.NewReader(data), nil)
			if err != nil || s.Pairs != uint64(n) {
				t.Fatalf("Decode accepted %d pairs, Verify = %+v, %v", n, s, err)
			}
		}
	})
}
