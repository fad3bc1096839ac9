package snap

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/distkv/distkv/internal/kv"
)

// benchPairs returns 100k pairs with 16-byte keys and 256-byte values made of
// JSON-like text with random fields, and their raw size.
func benchPairs() ([]kv.KeyValue, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	pairs := make([]kv.KeyValue, 100_000)
	var raw int64
	for i := range pairs {
		v := fmt.Appendf(nil, `{"id":%d,"name":"user-%x","balance":%d,"tags":["a","b"],"note":"`, i, rng.Uint64(), rng.IntN(1e6))
		for len(v) < 254 {
			v = append(v, 'a'+byte(rng.IntN(26)))
		}
		v = append(v, `"}`...)
		pairs[i] = kv.KeyValue{Key: fmt.Appendf(nil, "%016x", i), Value: v, Version: 1, Revision: int64(i + 1), CreateRevision: int64(i + 1)}
		raw += int64(len(pairs[i].Key) + len(v))
	}
	return pairs, raw
}

func BenchmarkEncode(b *testing.B) {
	pairs, raw := benchPairs()
	meta := Meta{Shard: 1, Index: uint64(len(pairs)), Term: 1}
	var cw countWriter
	b.SetBytes(raw)
	b.ReportAllocs()
	for b.Loop() {
		cw = 0
		if err := Encode(&cw, meta, slices.Values(pairs)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cw)/float64(raw)*100, "%size")
}

func BenchmarkDecode(b *testing.B) {
	pairs, raw := benchPairs()
	var buf bytes.Buffer
	if err := Encode(&buf, Meta{Shard: 1, Index: uint64(len(pairs)), Term: 1}, slices.Values(pairs)); err != nil {
		b.Fatal(err)
	}
	enc := buf.Bytes()
	b.SetBytes(raw)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if _, err := Decode(bytes.NewReader(enc), func(kv.KeyValue) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != len(pairs) {
			b.Fatalf("decoded %d pairs", n)
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
