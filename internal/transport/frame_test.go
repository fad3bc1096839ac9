package transport

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func TestFrameReader(t *testing.T) {
	good := appendCall(nil, 42, 3, 9, []byte("payload"))
	two := appendFrame(bytes.Clone(good), frameCancel, []byte{42})
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x10
		return b
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		frames int
		want   error  // errors.Is target after the frames
		text   string // substring of the error
	}{
		{"empty", nil, 0, io.EOF, ""},
		{"one", good, 1, io.EOF, ""},
		{"two", two, 2, io.EOF, ""},
		{"torn header", good[:5], 0, io.ErrUnexpectedEOF, ""},
		{"torn body", good[:len(good)-1], 0, io.ErrUnexpectedEOF, ""},
		{"torn second", two[:len(two)-1], 1, io.ErrUnexpectedEOF, ""},
		{"flipped body", flip(good, len(good)-1), 0, ErrProtocol, "checksum"},
		{"flipped type", flip(good, 4), 0, ErrProtocol, "checksum"},
		{"flipped crc", flip(good, 9), 0, ErrProtocol, "checksum"},
		{"reserved", flip(good, 6), 0, ErrProtocol, "reserved"},
		{"too large", flip(good, 0), 0, ErrProtocol, "exceeds the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &frameReader{r: bytes.NewReader(tc.in), max: 1 << 20}
			n := 0
			var err error
			for {
				var typ frameType
				var body []byte
				if typ, body, err = fr.next(); err != nil {
					break
				}
				if n == 0 {
					id, shard, method, payload, derr := decodeCall(body)
					if typ != frameCall || derr != nil || id != 42 || shard != 3 || method != 9 || string(payload) != "payload" {
						t.Fatalf("frame decoded as %s %d %d %d %q %v", typ, id, shard, method, payload, derr)
					}
				}
				n++
			}
			if n != tc.frames || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("%d frames then %v; want %d then %v (%q)", n, err, tc.frames, tc.want, tc.text)
			}
		})
	}
}

// TestFrameReaderAllocatesWithData: a header claiming a huge body followed
// by a few bytes must not allocate the claimed size.
func TestFrameReaderAllocatesWithData(t *testing.T) {
	in := appendFrame(nil, frameRaft, make([]byte, 100))
	in[0], in[1] = 0x00, 0xf0 // claims ~15.7 MB
	fr := &frameReader{r: bytes.NewReader(in), max: 16 << 20}
	var err error
	if alloc := allocatedBy(func() { _, _, err = fr.next() }); alloc > 1<<20 {
		t.Fatalf("allocated %d bytes for a frame with 100 bytes of body", alloc)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	// A real large frame still decodes.
	big := bytes.Repeat([]byte("0123456789"), 300000)
	fr = &frameReader{r: bytes.NewReader(appendFrame(nil, frameRaft, big)), max: 16 << 20}
	if _, body, err := fr.next(); err != nil || !bytes.Equal(body, big) {
		t.Fatalf("large frame: %d bytes, %v", len(body), err)
	}
}

func TestDecodeRaftRuns(t *testing.T) {
	var body []byte
	for i, shard := range []uint64{1, 1, 2, 1} {
		m := heartbeat(1, 2, uint64(i))
		b, _ := m.Marshal()
		body = append(body, byte(shard), byte(len(b)))
		body = append(body, b...)
	}
	var runs [][]raftpb.Message
	var shards []uint64
	if err := decodeRaft(body, func(shard uint64, msgs []raftpb.Message) {
		runs = append(runs, msgs)
		shards = append(shards, shard)
	}); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || len(runs[0]) != 2 || shards[0] != 1 || shards[1] != 2 || shards[2] != 1 {
		t.Fatalf("runs %v shards %v", runs, shards)
	}
	// A handler appending to its run must not overwrite the next one.
	_ = append(runs[0], raftpb.Message{Commit: 99})
	if runs[1][0].Commit != 2 {
		t.Fatalf("appending to a run overwrote the next: %+v", runs[1][0])
	}
	// Local-only responses are refused before decoding.
	nested := []byte{1, 4, 0x72, 2, 0x72, 0}
	if err := decodeRaft(nested, func(uint64, []raftpb.Message) {}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("nested responses: %v", err)
	}
}

// TestInboundProtocol feeds frame streams to an accepted connection and
// checks how it ends.
func TestInboundProtocol(t *testing.T) {
	begin := appendUvarints(nil, frameSnapBegin, 1, 4)
	data := func(id uint64, n int) []byte { return appendIDFrame(nil, frameSnapData, id, make([]byte, n)) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	overrun := bytes.Clone(begin)
	for range snapWindow + 1 {
		overrun = append(overrun, data(1, 10)...)
	}
	for _, tc := range []struct {
		name     string
		in       []byte
		protocol bool
		text     string
	}{
		{"valid traffic", seedFrames()[1][:bytes.Index(seedFrames()[1], appendStatusFrame(nil, frameReply, 5, []byte("ok"), nil))], false, "closed by peer"},
		{"reply on inbound", appendStatusFrame(nil, frameReply, 1, nil, nil), true, "unexpected reply frame"},
		{"hello again", appendHello(nil, hello{}), true, "unexpected hello frame"},
		{"unknown type", appendFrame(nil, 99, nil), true, "frame-type-99"},
		{"truncated call", appendFrame(nil, frameCall, []byte{1}), true, "truncated"},
		{"duplicate stream", cat(begin, begin), true, "does not grow"},
		{"data before begin", data(3, 10), true, "never began"},
		{"oversized chunk", cat(begin, data(1, snapChunkSize+1)), true, "snapshot chunk of"},
		{"empty chunk", cat(begin, data(1, 0)), true, "snapshot chunk of 0"},
		{"window overrun", overrun, true, "overran its window"},
		{"end with trailer", cat(begin, appendIDFrame(nil, frameSnapEnd, 1, []byte{0})), true, "trailing"},
		{"bad raft record", appendFrame(nil, frameRaft, []byte{1, 50, 1}), true, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := bareTransport()
			tr.cfg.Handler = blockingSnapshots{}
			c := newConn(tr, &fakeConn{r: bytes.NewReader(tc.in)}, &frameReader{r: bytes.NewReader(tc.in), max: tr.cfg.MaxFrameSize}, 1, nil)
			tr.wg.Add(1)
			c.readLoop()
			tr.wg.Wait()
			tr.cancel()
			if !errors.Is(c.err, ErrConnLost) || errors.Is(c.err, ErrProtocol) != tc.protocol || !strings.Contains(c.err.Error(), tc.text) {
				t.Fatalf("connection ended with %v; want protocol error %v with %q", c.err, tc.protocol, tc.text)
			}
		})
	}
}

// blockingSnapshots is fuzzHandler, except that snapshot handlers read
// nothing until their stream fails, so chunks pile up.
type blockingSnapshots struct{ fuzzHandler }

func (blockingSnapshots) HandleSnapshot(_, _ uint64, r io.Reader) error {
	s := r.(*inStream)
	<-s.c.done
	_, err := io.Copy(io.Discard, r)
	return err
}
