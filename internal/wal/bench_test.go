package wal

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// benchValue is a 256-byte JSON-like entry payload.
func benchValue(rng *rand.Rand) []byte {
	v := jsonValue(rng)
	for len(v) < 256 {
		v = append(v, ' ')
	}
	return v[:256]
}

func reportAppend(b *testing.B, w *WAL) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if s := w.nSyncs.Load(); s > 0 {
		b.ReportMetric(float64(w.nRecords.Load())/float64(s), "records/fsync")
	}
}

// BenchmarkAppendSync1: one writer, one 256-byte entry per synced Append.
// b.TempDir is on the real disk (os.TempDir), so every Append pays an fsync.
func BenchmarkAppendSync1(b *testing.B) {
	w, _ := openAll(b, Config{Dir: b.TempDir()})
	rng := rand.New(rand.NewPCG(1, 2))
	rec := []Record{{Shard: 1, Type: RecordEntry, Data: benchValue(rng)}}
	b.SetBytes(256)
	b.ResetTimer()
	for i := range b.N {
		rec[0].Index = uint64(i + 1)
		if err := w.Append(rec, true); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportAppend(b, w)
	mustClose(b, w)
}

// BenchmarkAppendSync64: 64 concurrent writers, each appending one 256-byte
// entry per synced Append; group commit shares the fsyncs.
func BenchmarkAppendSync64(b *testing.B) { benchmarkAppendSync64(b, false) }

func benchmarkAppendSync64(b *testing.B, encrypted bool) {
	const writers = 64
	cfg := Config{Dir: b.TempDir()}
	if encrypted {
		master, err := crypt.ParseMasterKey(bytes.Repeat([]byte{7}, crypt.KeySize))
		if err != nil {
			b.Fatal(err)
		}
		if cfg.Cipher, err = crypt.Create(vfs.Default, b.TempDir(), master); err != nil {
			b.Fatal(err)
		}
	}
	w, _ := openAll(b, cfg)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			rec := []Record{{Shard: uint64(g % 8), Type: RecordEntry, Data: benchValue(rng)}}
			<-start
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				rec[0].Index = uint64(i)
				if err := w.Append(rec, true); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	b.SetBytes(256)
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	reportAppend(b, w)
	mustClose(b, w)
}

// BenchmarkAppendEncode: the CPU of the append path without the disk: one
// 256-byte entry per Append on a file system whose syncs do nothing, in the
// clear and sealed (Config.Cipher), with the server's default codec. Run
// both in one go and compare their ns/op.
func BenchmarkAppendEncode(b *testing.B) {
	master, err := crypt.ParseMasterKey(bytes.Repeat([]byte{7}, crypt.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	cipher, err := crypt.Create(vfs.Default, b.TempDir(), master)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cipher *crypt.Cipher
	}{{"plain", nil}, {"encrypted", cipher}} {
		b.Run(tc.name, func(b *testing.B) {
			w, _ := openAll(b, Config{Dir: b.TempDir(), FS: noSyncFS{vfs.Default}, Compression: CompressionS2, Cipher: tc.cipher})
			rng := rand.New(rand.NewPCG(1, 2))
			rec := []Record{{Shard: 1, Type: RecordEntry, Data: benchValue(rng)}}
			b.SetBytes(256)
			b.ResetTimer()
			for i := range b.N {
				rec[0].Index = uint64(i + 1)
				if err := w.Append(rec, true); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportAppend(b, w)
			mustClose(b, w)
		})
	}
}

// BenchmarkAppendSync64Encrypted is BenchmarkAppendSync64 with a Cipher.
func BenchmarkAppendSync64Encrypted(b *testing.B) {
	benchmarkAppendSync64(b, true)
}

// BenchmarkEncodeFrame: building one frame of a 256-byte entry in memory,
// in the clear and sealed: the CPU that encryption adds to an append,
// without the write and its noise.
func BenchmarkEncodeFrame(b *testing.B) {
	master, err := crypt.ParseMasterKey(bytes.Repeat([]byte{7}, crypt.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	cipher, err := crypt.Create(vfs.Default, b.TempDir(), master)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	raw := encodeRecords([]Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: benchValue(rng)}})
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "encrypted"}[sealed], func(b *testing.B) {
			var c frameCodec
			defer c.close()
			if sealed {
				if c.sealer, err = cipher.NewSealer(cryptDomain); err != nil {
					b.Fatal(err)
				}
			}
			var frame []byte
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if frame, err = c.appendFrame(frame[:0], raw, CompressionS2, DefaultMinCompressSize, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
