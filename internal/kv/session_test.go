package kv

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// withID gives cmd the request id client/request, proposed at time with ttl.
func withID(cmd Command, client, request string, time, ttl int64) Command {
	cmd.Request = RequestID{Client: []byte(client), Request: []byte(request)}
	cmd.Time, cmd.TTL = time, ttl
	return cmd
}

func mustApply(t *testing.T, s *Store, index uint64, cmd Command) Result {
	t.Helper()
	res, err := s.Apply(index, cmd)
	if err != nil {
		t.Fatalf("apply %d: %v", index, err)
	}
	return res
}

// A request applied twice is applied once: the second gets the first's
// Result and changes nothing; another op with the same ids, or the same op
// from another client, is another request.
func TestRequestAppliedOnce(t *testing.T) {
	s := NewStore()
	first := mustApply(t, s, 1, withID(put("k", "v1", Cond{}), "c1", "r1", 100, 1000))
	if first.Replayed || first.Revision != 1 || first.Version != 1 {
		t.Fatalf("first: %s", fmtResult(first))
	}
	again := mustApply(t, s, 2, withID(put("k", "v2", Cond{}), "c1", "r1", 200, 1000))
	if !again.Replayed || !equalResult(again, first) {
		t.Fatalf("retry: %s replayed=%v, want %s", fmtResult(again), again.Replayed, fmtResult(first))
	}
	if kv, _ := s.Get([]byte("k")); string(kv.Value) != "v1" || kv.Version != 1 || kv.Revision != 1 {
		t.Fatalf("after the retry: %s", fmtKV(kv))
	}
	if s.Applied() != 2 {
		t.Fatalf("applied %d, want 2: the retry's index is consumed", s.Applied())
	}
	// The same ids for a delete: another request.
	del1 := mustApply(t, s, 3, withID(del("k", Cond{}), "c1", "r1", 300, 1000))
	if del1.Replayed || del1.Status != StatusOK || del1.Revision != 3 {
		t.Fatalf("delete with the put's ids: %s", fmtResult(del1))
	}
	// Another client with the same request id: another request.
	other := mustApply(t, s, 4, withID(put("k", "v3", Cond{}), "c2", "r1", 400, 1000))
	if other.Replayed || other.Revision != 4 {
		t.Fatalf("other client: %s", fmtResult(other))
	}
	// A conflict is recorded as any outcome.
	c1 := mustApply(t, s, 5, withID(put("k", "x", Cond{PrevVersion: i64(7)}), "c1", "r2", 500, 1000))
	mustApply(t, s, 6, put("k", "v4", Cond{}))
	c2 := mustApply(t, s, 7, withID(put("k", "x", Cond{PrevVersion: i64(2)}), "c1", "r2", 600, 1000))
	if c1.Status != StatusConflict || !c2.Replayed || !equalResult(c1, c2) {
		t.Fatalf("conflict then retry: %s, %s", fmtResult(c1), fmtResult(c2))
	}
	rec, ok := s.Record(RequestID{Client: []byte("c1"), Request: []byte("r1")}, OpPut)
	if !ok || string(rec.Key) != "k" || rec.Revision != 1 || rec.Expires != 1100 || !equalResult(rec.Result, first) {
		t.Fatalf("record: %+v %v", rec, ok)
	}
	if _, ok := s.Record(RequestID{Client: []byte("c1"), Request: []byte("r1")}, OpTxn); ok {
		t.Fatal("a txn record for ids only a put and a delete used")
	}
	st := s.SessionStats()
	if st.Records != 4 || st.Requests != 3 || st.Clients != 2 {
		t.Fatalf("stats %+v, want 4 records of 3 requests from 2 clients", st)
	}
}

// Records expire by the Times of the commands applied, never by a clock of
// the store's own.
func TestRequestRecordExpires(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, withID(put("k", "v1", Cond{}), "c", "r", 1000, 500))
	// Time 1499 < 1000+500: still recorded.
	if res := mustApply(t, s, 2, withID(put("k", "v2", Cond{}), "c", "r", 1499, 500)); !res.Replayed {
		t.Fatalf("before expiry: %s not replayed", fmtResult(res))
	}
	// A command without an id does not move the clock.
	mustApply(t, s, 3, put("other", "x", Cond{}))
	if _, ok := s.Record(RequestID{Client: []byte("c"), Request: []byte("r")}, OpPut); !ok {
		t.Fatal("record gone without a later time")
	}
	// Another request at time 1500 expires it.
	mustApply(t, s, 4, withID(put("j", "x", Cond{}), "c", "other", 1500, 500))
	if _, ok := s.Record(RequestID{Client: []byte("c"), Request: []byte("r")}, OpPut); ok {
		t.Fatal("record still live at its expiry")
	}
	// A proposer whose clock is behind does not move the clock back.
	res := mustApply(t, s, 5, withID(put("k", "v3", Cond{}), "c", "r", 1200, 500))
	if res.Replayed || res.Revision != 5 || res.Version != 2 {
		t.Fatalf("after expiry: %s, want applied anew", fmtResult(res))
	}
	if s.sessions.clock != 1500 {
		t.Fatalf("clock %d, want 1500", s.sessions.clock)
	}
	// Its record expires at 1700, by the table's clock: live at 1699.
	if res := mustApply(t, s, 6, withID(put("k", "v4", Cond{}), "c", "r", 1699, 1)); !res.Replayed {
		t.Fatalf("%s not replayed", fmtResult(res))
	}
	if st := s.SessionStats(); st.Dropped != 1 {
		t.Fatalf("stats %+v, want 1 record dropped", st)
	}
}

// The table keeps at most MaxRecords records, the oldest dropped first.
func TestRequestRecordsBounded(t *testing.T) {
	s := NewStore()
	const n = MaxRecords + 10
	for i := range n {
		mustApply(t, s, uint64(i+1), withID(put("k", "v", Cond{}), "c", fmt.Sprint(i), int64(i), 1<<60))
	}
	if st := s.SessionStats(); st.Records != MaxRecords {
		t.Fatalf("%d records, want %d", st.Records, MaxRecords)
	}
	for i, want := range map[int]bool{0: false, 9: false, 10: true, n - 1: true} {
		if _, ok := s.Record(RequestID{Client: []byte("c"), Request: []byte(fmt.Sprint(i))}, OpPut); ok != want {
			t.Errorf("record %d kept: %v, want %v", i, ok, want)
		}
	}
	// Large records are bounded by bytes.
	s = NewStore()
	big := strings.Repeat("k", 64<<10)
	for i := range MaxRecordBytes/(64<<10) + 10 {
		mustApply(t, s, uint64(i+1), withID(put(big+fmt.Sprint(i), "v", Cond{}), "c", fmt.Sprint(i), int64(i), 1<<60))
	}
	if st := s.SessionStats(); st.Bytes > MaxRecordBytes || st.Records == 0 {
		t.Fatalf("stats %+v: over %d bytes", st, MaxRecordBytes)
	}
}

// A Result too large to record is not kept; a retry learns that the request
// was applied, and when, and applies nothing.
func TestRequestAnswerTooLargeToKeep(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, put("big", strings.Repeat("v", MaxRecordedResult), Cond{}))
	get := Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{tget("big"), tput("x", "1")}}}
	first := mustApply(t, s, 2, withID(get, "c", "r", 10, 100))
	if first.Txn == nil || len(first.Txn.Responses) != 2 {
		t.Fatalf("first: %s", fmtResult(first))
	}
	again := mustApply(t, s, 3, withID(get, "c", "r", 20, 100))
	if !again.Replayed || again.Status != StatusAnswerNotKept || again.Revision != 2 || again.Err() != ErrAnswerNotKept {
		t.Fatalf("retry: %s", fmtResult(again))
	}
	if kv, _ := s.Get([]byte("x")); kv.Version != 1 {
		t.Fatalf("x at version %d: the retry applied", kv.Version)
	}
	if rec, ok := s.Record(RequestID{Client: []byte("c"), Request: []byte("r")}, OpTxn); !ok || rec.AnswerSize <= MaxRecordedResult {
		t.Fatalf("record %+v %v", rec, ok)
	}
}

// sessionStore returns a store whose table holds records of every kind.
func sessionStore() *Store {
	s := NewStore()
	cmds := []Command{
		withID(put("a", "1", Cond{}), "c1", "r1", 10, 1000),
		withID(jsonPut("b", `{"x":1}`), "", "idem-key", 20, 1000),
		withID(del("a", Cond{}), "c1", "r1", 30, 1000),
		withID(put("b", "x", Cond{CreateOnly: true}), "c2", "r9", 40, 5),
		withID(Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{tget("b"), tput("c", "3")}}}, "c3", "t1", 50, 1000),
		withID(put("d", "x", Cond{}), "c1", "r2", 60, 1000), // expires the c2 record
		withID(put("e", strings.Repeat("v", MaxRecordedResult), Cond{}), "c1", "r3", 70, 1000),
		withID(Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{tget("e")}}}, "c1", "big", 80, 1000),
	}
	for i, c := range cmds {
		if _, err := s.Apply(uint64(i+1), c); err != nil {
			panic(err)
		}
	}
	return s
}

// sampleStates are encoded tables, for the fuzzer's seeds.
func sampleStates() [][]byte {
	var out [][]byte
	for _, s := range []*Store{NewStore(), sessionStore(), authStore()} {
		for p := range s.Snapshot().SnapshotPairs() {
			out = append(out, bytes.Clone(p.Value[len(stateMagic):]))
			break
		}
	}
	return out
}

// The table is state machine state: a snapshot carries it, so a retry
// applied on a replica restored from the snapshot is still deduplicated, and
// the restored replica writes the same snapshot as the one it came from.
func TestSnapshotCarriesSessions(t *testing.T) {
	src := sessionStore()
	var pairs []KeyValue
	for p := range src.Snapshot().SnapshotPairs() {
		p.Value = bytes.Clone(p.Value)
		pairs = append(pairs, p)
	}
	dst := NewStore()
	if err := dst.RestoreSnapshot(src.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	i := 0
	for p := range dst.Snapshot().SnapshotPairs() {
		if !bytes.Equal(p.Key, pairs[i].Key) || !bytes.Equal(p.Value, pairs[i].Value) {
			t.Fatalf("pair %d: restored store writes %q=%q, want %q", i, p.Key, p.Value, pairs[i].Value)
		}
		i++
	}
	if src.SessionStats() != dst.SessionStats() {
		t.Fatalf("stats %+v after restore, want %+v", dst.SessionStats(), src.SessionStats())
	}
	for _, s := range []*Store{src, dst} {
		res := mustApply(t, s, 100, withID(put("a", "again", Cond{}), "c1", "r1", 90, 1000))
		if !res.Replayed || res.Revision != 1 {
			t.Fatalf("retry after restore: %s", fmtResult(res))
		}
	}
	// Restore without the table (Restore, of plain pairs) empties it.
	if err := dst.Restore(200, seqOf(nil, nil)); err != nil || dst.SessionStats().Records != 0 {
		t.Fatalf("Restore kept the table: %v %+v", err, dst.SessionStats())
	}
}

func TestCommandRequestCodec(t *testing.T) {
	for _, c := range []Command{
		withID(put("k", "v", Cond{}), "c", "r", 1, 2),
		withID(del("k", Cond{PrevVersion: i64(1)}), "", "key", -5, 1<<62),
		withID(Command{Op: OpTxn}, "client", "req", 0, 1),
		withID(jsonPut("k", "12"), "c", "r", 123456789, 3600e9),
	} {
		got, err := UnmarshalCommand(c.Marshal())
		if err != nil || !equalCommand(got, c) || len(c.Marshal()) != c.size() {
			t.Fatalf("%+v: %+v, %v", c, got, err)
		}
	}
	for _, c := range []Command{
		withID(put("k", "v", Cond{}), "c", "", 1, 2),  // no request id
		withID(put("k", "v", Cond{}), "c", "r", 1, 0), // no TTL
		{Op: OpPut, Key: []byte("k"), Time: 5},        // a time without an id
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid", c)
		}
		b := c.Marshal()
		if _, err := UnmarshalCommand(b); err == nil && !c.Request.IsZero() {
			t.Errorf("%+v: decoded", c)
		}
		if _, err := NewStore().Apply(1, c); err == nil {
			t.Errorf("%+v: applied", c)
		}
	}
}
