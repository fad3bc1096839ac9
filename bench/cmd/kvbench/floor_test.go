package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a test hook that blocks until opened.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate     { return &gate{ch: make(chan struct{})} }
func (g *gate) wait()    { <-g.ch }
func (g *gate) release() { g.once.Do(func() { close(g.ch) }) }

type floorCluster struct {
	p        *primary
	replicas []*replica
	pdir     string
	rdirs    []string
	url      string
}

// startFloor starts len(holdAcks) replicas and a primary waiting for acks of
// them. A replica whose gate is not nil sends no ack until it is released; a
// non-nil holdSync keeps the primary's fdatasync from running until released.
func startFloor(t *testing.T, acks int, holdAcks []*gate, holdSync *gate) *floorCluster {
	t.Helper()
	fc := &floorCluster{pdir: t.TempDir()}
	var addrs []string
	for _, g := range holdAcks {
		dir := t.TempDir()
		r, err := newReplica(dir)
		if err != nil {
			t.Fatal(err)
		}
		if g != nil {
			r.beforeAck = g.wait
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.start(ln)
		fc.replicas = append(fc.replicas, r)
		fc.rdirs = append(fc.rdirs, dir)
		addrs = append(addrs, ln.Addr().String())
	}
	p, err := newPrimary(fc.pdir, addrs, acks)
	if err != nil {
		t.Fatal(err)
	}
	if holdSync != nil {
		p.beforeSync = holdSync.wait
	}
	if err := p.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	fc.p = p
	srv := httptest.NewServer(p.handler())
	fc.url = srv.URL
	t.Cleanup(func() {
		// Release every hook first: Close waits for the goroutines they hold.
		for _, g := range append(holdAcks, holdSync) {
			if g != nil {
				g.release()
			}
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		srv.Close()
		for _, r := range fc.replicas {
			if err := r.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	return fc
}

// put writes key and returns the id of the answer, checking its shape.
func put(url, key, value string) (int64, error) {
	body := `{"value":"` + value + `"}`
	req, err := http.NewRequest(http.MethodPut, url+"/key/"+key, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var got struct {
		Status string `json:"status"`
		ID     *int64 `json:"id"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Status != "ok" || got.ID == nil {
		return 0, fmt.Errorf("PUT %s: %s %q", key, resp.Status, b)
	}
	return *got.ID, nil
}

// putAsync starts a PUT; its result arrives on the returned channel.
func putAsync(url, key string) <-chan error {
	c := make(chan error, 1)
	go func() {
		_, err := put(url, key, "v")
		c <- err
	}()
	return c
}

// readLog decodes a floor log into its records (key -> body) and counts them.
func readLog(path string) (map[string]string, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	recs := make(map[string]string)
	n := 0
	r := bytes.NewReader(b)
	var lastSeq uint64
	for r.Len() > 0 {
		// The reserve of zeros after the last frame ends the log.
		if rest := b[len(b)-r.Len():]; !slices.ContainsFunc(rest, func(c byte) bool { return c != 0 }) {
			break
		}
		frame, seq, err := readFrame(r, nil, maxPayload)
		if err != nil {
			return nil, 0, fmt.Errorf("frame after sequence %d: %w", lastSeq, err)
		}
		if seq <= lastSeq {
			return nil, 0, fmt.Errorf("sequence %d after %d", seq, lastSeq)
		}
		lastSeq = seq
		walkRecords(frame[headerLen:], func(k, v []byte) {
			recs[string(k)] = string(v)
			n++
		})
	}
	return recs, n, nil
}

func TestFloorEndToEnd(t *testing.T) {
	fc := startFloor(t, 1, []*gate{nil, nil}, nil)
	const total, workers = 200, 8
	keys := make(chan int, total)
	for i := range total {
		keys <- i
	}
	close(keys)
	ids := make([]int64, total)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := range keys {
				id, err := put(fc.url, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[int64]bool)
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("id %d answered twice (key %d)", id, i)
		}
		seen[id] = true
	}

	checkGet(t, fc.url+"/key/k007", http.StatusOK, fmt.Sprintf(`{"key":"k007","value":"v7","version":1,"revision":%d}`, ids[7]))
	checkGet(t, fc.url+"/key/nope", http.StatusNotFound, `{"detail":"Key not found"}`)
	checkGet(t, fc.url+"/health", http.StatusOK, `{"status":"ok"}`)

	// Every answered write is in the primary's log; a replica that did not
	// count may lag a moment.
	checkLog(t, filepath.Join(fc.pdir, logName), total)
	for _, dir := range fc.rdirs {
		deadline := time.Now().Add(5 * time.Second)
		for !logHas(filepath.Join(dir, logName), total) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		checkLog(t, filepath.Join(dir, logName), total)
	}
}

func checkGet(t *testing.T, url string, code int, want string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code || strings.TrimSpace(string(b)) != want {
		t.Fatalf("GET %s: %d %s; want %d %s", url, resp.StatusCode, b, code, want)
	}
}

func logHas(path string, n int) bool {
	_, got, err := readLog(path)
	return err == nil && got == n
}

func checkLog(t *testing.T, path string, total int) {
	t.Helper()
	recs, n, err := readLog(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if n != total || len(recs) != total {
		t.Fatalf("%s: %d records, %d keys; want %d", path, n, len(recs), total)
	}
	for i := range total {
		k, want := fmt.Sprintf("k%03d", i), fmt.Sprintf(`{"value":"v%d"}`, i)
		if recs[k] != want {
			t.Fatalf("%s: %s = %q, want %q", path, k, recs[k], want)
		}
	}
}

// notAnswered fails if done yields within d.
func notAnswered(t *testing.T, done <-chan error, d time.Duration, why string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("PUT answered (err %v) while %s", err, why)
	case <-time.After(d):
	}
}

func answered(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("PUT not answered within 5s")
	}
}

func TestFloorWaitsForReplicaAcks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		acks     int
		replicas int
		wait     bool // whether holding replica 0's acks holds the answer
	}{
		{"acks1-of-1-held", 1, 1, true},
		{"acks2-one-of-2-held", 2, 2, true},
		{"acks1-one-of-2-held", 1, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := newGate()
			gates := make([]*gate, tc.replicas)
			gates[0] = held
			fc := startFloor(t, tc.acks, gates, nil)
			done := putAsync(fc.url, "k")
			if tc.wait {
				notAnswered(t, done, 300*time.Millisecond, "a replica it needs holds its ack")
				held.release()
			}
			answered(t, done)
		})
	}
}

func TestFloorWaitsForLocalSync(t *testing.T) {
	hold := newGate()
	fc := startFloor(t, 2, []*gate{nil, nil}, hold)
	done := putAsync(fc.url, "k")
	// Wait until both replicas acked the batch: only the local fdatasync is
	// missing then.
	deadline := time.Now().Add(5 * time.Second)
	for !bothAcked(fc.p) {
		if time.Now().After(deadline) {
			t.Fatal("replicas did not ack within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	notAnswered(t, done, 300*time.Millisecond, "the primary's own fdatasync was held")
	hold.release()
	answered(t, done)
}

func bothAcked(p *primary) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if l.acked < 1 {
			return false
		}
	}
	return true
}

// A frame longer than the limit closes the connection before its payload is
// read.
func TestFloorReplicaRefusesOversizedFrame(t *testing.T) {
	r, err := newReplica(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.start(ln)
	defer r.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[:4], maxPayload+1)
	if _, err := c.Write(h[:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after an oversized frame: %d bytes, %v; want EOF", n, err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	const limit = 1 << 12
	valid := appendRecord(appendRecord(make([]byte, headerLen), "k1", []byte(`{"value":"a"}`)), "", nil)
	sealFrame(valid, 7)
	f.Add(valid)
	f.Add(valid[:len(valid)-1])           // torn
	f.Add(append(valid, valid...))        // two frames: the first decodes
	f.Add(make([]byte, headerLen))        // empty batch
	f.Add([]byte{0, 0, 0x10, 1, 0, 0, 0}) // a header cut short
	nonMinimal := append(make([]byte, headerLen), 0x81, 0x00, 'k', 0)
	sealFrame(nonMinimal, 1)
	f.Add(nonMinimal)
	tooLong := make([]byte, headerLen)
	binary.BigEndian.PutUint32(tooLong, limit+1)
	f.Add(tooLong)

	f.Fuzz(func(t *testing.T, data []byte) {
		frame, seq, err := readFrame(bytes.NewReader(data), nil, limit)
		if len(data) >= headerLen && binary.BigEndian.Uint32(data) > limit {
			if !errors.Is(err, errFrameTooLarge) {
				t.Fatalf("length %d > %d accepted: err %v", binary.BigEndian.Uint32(data), limit, err)
			}
			return
		}
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		payload := []byte{}
		if err := walkRecords(frame[headerLen:], func(k, v []byte) {
			payload = appendRecord(payload, string(k), v)
		}); err != nil {
			t.Fatalf("readFrame accepted a payload walkRecords refuses: %v", err)
		}
		again := append(make([]byte, headerLen), payload...)
		sealFrame(again, seq)
		if !bytes.Equal(again, data[:len(frame)]) {
			t.Fatalf("re-encoded %x, read %x", again, data[:len(frame)])
		}
	})
}

// The log is written inside a reserve of zeros, as distkv's WAL is, so that
// an fdatasync writes no inode: the file is a whole number of reserve steps,
// grows by steps, and its frames still read back.
func TestFloorLogReserve(t *testing.T) {
	dir := t.TempDir()
	l, err := openLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	size := func() int64 {
		fi, err := os.Stat(l.Name())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if got := size(); got != reserveStep {
		t.Fatalf("fresh log is %d bytes, want the %d-byte reserve", got, reserveStep)
	}
	rec := appendRecord(make([]byte, headerLen), "k", make([]byte, 100<<10))
	var want int
	for seq := uint64(1); l.end <= reserveStep; seq++ {
		frame := append([]byte(nil), rec...)
		sealFrame(frame, seq)
		if err := l.write(frame); err != nil {
			t.Fatal(err)
		}
		want++
	}
	if err := l.sync(); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != 2*reserveStep {
		t.Fatalf("after %d bytes of frames the log is %d bytes, want %d", l.end, got, 2*reserveStep)
	}
	if _, n, err := readLog(l.Name()); err != nil || n != want {
		t.Fatalf("read back %d records (%v), want %d", n, err, want)
	}
}
