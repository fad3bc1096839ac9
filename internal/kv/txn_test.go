package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Builders of transactions for the tests.

func cmpValue(key string, op CompareOp, value string) Compare {
	return Compare{Key: []byte(key), Target: TargetValue, Op: op, Value: []byte(value)}
}

func cmpNum(key string, target CompareTarget, op CompareOp, n int64) Compare {
	return Compare{Key: []byte(key), Target: target, Op: op, Number: n}
}

func cmpExists(key string, op CompareOp, exists bool) Compare {
	return Compare{Key: []byte(key), Target: TargetExists, Op: op, Exists: exists}
}

func tput(key, value string) TxnOp {
	return TxnOp{Type: TxnPut, Key: []byte(key), Value: []byte(value)}
}
func tdel(key string) TxnOp { return TxnOp{Type: TxnDelete, Key: []byte(key)} }
func tget(key string) TxnOp { return TxnOp{Type: TxnGet, Key: []byte(key)} }

func txnCmd(cmps []Compare, success, failure []TxnOp) Command {
	return Command{Op: OpTxn, Txn: &Txn{Compares: cmps, Success: success, Failure: failure}}
}

func equalTxn(a, b *Txn) bool {
	if a == nil {
		a = &Txn{}
	}
	if b == nil {
		b = &Txn{}
	}
	if len(a.Compares) != len(b.Compares) {
		return false
	}
	for i := range a.Compares {
		x, y := a.Compares[i], b.Compares[i]
		if x.Target != y.Target || x.Op != y.Op || !bytes.Equal(x.Key, y.Key) {
			return false
		}
		switch x.Target {
		case TargetValue:
			if !bytes.Equal(x.Value, y.Value) {
				return false
			}
		case TargetExists:
			if x.Exists != y.Exists {
				return false
			}
		default:
			if x.Number != y.Number {
				return false
			}
		}
	}
	return equalTxnOps(a.Success, b.Success) && equalTxnOps(a.Failure, b.Failure)
}

func equalTxnOps(a, b []TxnOp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !bytes.Equal(a[i].Key, b[i].Key) || a[i].Kind != b[i].Kind ||
			(a[i].Type == TxnPut && !bytes.Equal(a[i].Value, b[i].Value)) {
			return false
		}
	}
	return true
}

func equalTxnResult(a, b *TxnResult) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Succeeded != b.Succeeded || len(a.Responses) != len(b.Responses) {
		return false
	}
	for i := range a.Responses {
		x, y := a.Responses[i], b.Responses[i]
		if x.Type != y.Type || x.Deleted != y.Deleted || x.Found != y.Found || !equalKV(x.KV, y.KV) {
			return false
		}
	}
	return true
}

func fmtTxnResult(t *TxnResult) string {
	if t == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{succeeded=%v", t.Succeeded)
	for _, r := range t.Responses {
		switch r.Type {
		case TxnDelete:
			fmt.Fprintf(&b, " delete:%d", r.Deleted)
		case TxnGet:
			if r.Found {
				fmt.Fprintf(&b, " get:%s", fmtKV(r.KV))
			} else {
				b.WriteString(" get:missing")
			}
		default:
			fmt.Fprintf(&b, " %v", r.Type)
		}
	}
	return b.String() + "}"
}

func TestCompare(t *testing.T) {
	s := NewStore()
	// k: version 2, revision 7, create revision 3, value "m".
	for i, cmd := range []Command{put("k", "a", Cond{}), put("k", "m", Cond{})} {
		if _, err := s.Apply([]uint64{3, 7}[i], cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(8, put("empty", "", Cond{})); err != nil {
		t.Fatal(err)
	}
	ops := []CompareOp{CompareEqual, CompareNotEqual, CompareLess, CompareGreater, CompareLessEqual, CompareGreaterEqual}
	// want[i] is the outcome with ops[i] for a target below, equal to and
	// above the operand.
	below := [6]bool{false, true, false, true, false, true}
	equal := [6]bool{true, false, false, false, true, true}
	above := [6]bool{false, true, true, false, true, false}
	never := [6]bool{}
	tests := []struct {
		name string
		cmp  func(op CompareOp) Compare
		want [6]bool
	}{
		{"value equal", func(op CompareOp) Compare { return cmpValue("k", op, "m") }, equal},
		{"value above operand", func(op CompareOp) Compare { return cmpValue("k", op, "a") }, below},
		{"value below operand", func(op CompareOp) Compare { return cmpValue("k", op, "z") }, above},
		{"value is a byte-wise compare, longer is greater", func(op CompareOp) Compare { return cmpValue("k", op, "m\x00") }, above},
		{"value compare with 0xff", func(op CompareOp) Compare { return cmpValue("k", op, "\xff") }, above},
		{"empty value equals empty operand", func(op CompareOp) Compare { return cmpValue("empty", op, "") }, equal},
		{"empty value below operand", func(op CompareOp) Compare { return cmpValue("empty", op, "a") }, above},
		{"value of a missing key never holds", func(op CompareOp) Compare { return cmpValue("nope", op, "") }, never},
		{"value of a missing key never holds (non-empty operand)", func(op CompareOp) Compare { return cmpValue("nope", op, "x") }, never},

		{"version equal", func(op CompareOp) Compare { return cmpNum("k", TargetVersion, op, 2) }, equal},
		{"version above operand", func(op CompareOp) Compare { return cmpNum("k", TargetVersion, op, 1) }, below},
		{"version below operand", func(op CompareOp) Compare { return cmpNum("k", TargetVersion, op, 3) }, above},
		{"version of a missing key is 0", func(op CompareOp) Compare { return cmpNum("nope", TargetVersion, op, 0) }, equal},
		{"version of a missing key is below 1", func(op CompareOp) Compare { return cmpNum("nope", TargetVersion, op, 1) }, above},

		{"revision equal", func(op CompareOp) Compare { return cmpNum("k", TargetRevision, op, 7) }, equal},
		{"revision above operand", func(op CompareOp) Compare { return cmpNum("k", TargetRevision, op, 6) }, below},
		{"revision below operand", func(op CompareOp) Compare { return cmpNum("k", TargetRevision, op, 100) }, above},
		{"revision of a missing key is 0", func(op CompareOp) Compare { return cmpNum("nope", TargetRevision, op, 0) }, equal},
		{"revision vs negative operand", func(op CompareOp) Compare { return cmpNum("nope", TargetRevision, op, -1) }, below},

		{"create revision equal", func(op CompareOp) Compare { return cmpNum("k", TargetCreateRevision, op, 3) }, equal},
		{"create revision above operand", func(op CompareOp) Compare { return cmpNum("k", TargetCreateRevision, op, 2) }, below},
		{"create revision below operand", func(op CompareOp) Compare { return cmpNum("k", TargetCreateRevision, op, 7) }, above},
		{"create revision of a missing key is 0", func(op CompareOp) Compare { return cmpNum("nope", TargetCreateRevision, op, 0) }, equal},
		{"create revision vs max", func(op CompareOp) Compare { return cmpNum("k", TargetCreateRevision, op, math.MaxInt64) }, above},
	}
	for _, tt := range tests {
		for i, op := range ops {
			c := tt.cmp(op)
			t.Run(fmt.Sprintf("%s/%v", tt.name, op), func(t *testing.T) {
				checkCompare(t, s, c, tt.want[i])
			})
		}
	}
	for _, tc := range []struct {
		key    string
		op     CompareOp
		exists bool
		want   bool
	}{
		{"k", CompareEqual, true, true},
		{"k", CompareEqual, false, false},
		{"k", CompareNotEqual, true, false},
		{"k", CompareNotEqual, false, true},
		{"nope", CompareEqual, true, false},
		{"nope", CompareEqual, false, true},
		{"nope", CompareNotEqual, true, true},
		{"nope", CompareNotEqual, false, false},
		{"empty", CompareEqual, true, true}, // an empty value exists
	} {
		c := cmpExists(tc.key, tc.op, tc.exists)
		t.Run(fmt.Sprintf("exists/%s %v %v", tc.key, tc.op, tc.exists), func(t *testing.T) {
			checkCompare(t, s, c, tc.want)
		})
	}
}

// checkCompare runs a txn of the single compare c on s and checks the branch
// taken. The branches only read, so s does not change.
func checkCompare(t *testing.T, s *Store, c Compare, want bool) {
	t.Helper()
	index := s.Applied() + 1
	cmd := txnCmd([]Compare{c}, []TxnOp{tget("k")}, []TxnOp{tget("nope"), tget("k")})
	r, err := s.Apply(index, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusOK || r.Revision != int64(index) || r.Txn == nil {
		t.Fatalf("result %s", fmtResult(r))
	}
	if r.Txn.Succeeded != want {
		t.Fatalf("%v %q %v (value %q number %d exists %v): succeeded=%v, want %v",
			c.Target, c.Key, c.Op, c.Value, c.Number, c.Exists, r.Txn.Succeeded, want)
	}
	wantN := 2
	if want {
		wantN = 1
	}
	if len(r.Txn.Responses) != wantN {
		t.Fatalf("%d responses, want %d (the other branch ran?): %s", len(r.Txn.Responses), wantN, fmtTxnResult(r.Txn))
	}
}

func TestApplyTxn(t *testing.T) {
	// Every case starts from: a="1" (v1 r1 c1), b="2" (v2 r3 c2); it is
	// applied at index 10.
	setup := []Command{put("a", "1", Cond{}), put("b", "x", Cond{}), put("b", "2", Cond{})}
	a1, b2 := kvOf("a", "1", 1, 1, 1), kvOf("b", "2", 2, 3, 2)
	ok := func(rs ...TxnResponse) *TxnResult { return &TxnResult{Succeeded: true, Responses: rs} }
	failed := func(rs ...TxnResponse) *TxnResult { return &TxnResult{Succeeded: false, Responses: rs} }
	rPut := TxnResponse{Type: TxnPut}
	rDel := func(n int64) TxnResponse { return TxnResponse{Type: TxnDelete, Deleted: n} }
	rGet := func(kv KeyValue) TxnResponse { return TxnResponse{Type: TxnGet, Found: true, KV: kv} }
	rMissing := TxnResponse{Type: TxnGet}

	tests := []struct {
		name  string
		txn   *Txn
		want  *TxnResult
		state []KeyValue // all pairs after the txn, in key order
	}{
		{"nil txn is empty and succeeds", nil, ok(), []KeyValue{a1, b2}},
		{"empty txn succeeds", &Txn{}, ok(), []KeyValue{a1, b2}},
		{"no compares runs success",
			&Txn{Success: []TxnOp{tput("c", "3")}, Failure: []TxnOp{tput("d", "4")}},
			ok(rPut), []KeyValue{a1, b2, kvOf("c", "3", 1, 10, 10)}},
		{"all compares hold: success runs, at one revision",
			&Txn{
				Compares: []Compare{cmpValue("a", CompareEqual, "1"), cmpNum("b", TargetVersion, CompareGreater, 1),
					cmpNum("b", TargetRevision, CompareLess, 100), cmpExists("c", CompareEqual, false)},
				Success: []TxnOp{tput("a", "y"), tdel("b"), tget("c"), tput("c", "new")},
				Failure: []TxnOp{tget("a")},
			},
			ok(rPut, rDel(1), rMissing, rPut),
			[]KeyValue{kvOf("a", "y", 2, 10, 1), kvOf("c", "new", 1, 10, 10)}},
		{"one compare fails: failure runs, success changes nothing",
			&Txn{
				Compares: []Compare{cmpValue("a", CompareEqual, "1"), cmpNum("b", TargetVersion, CompareGreater, 2)},
				Success:  []TxnOp{tput("a", "y"), tdel("b")},
				Failure:  []TxnOp{tget("a"), tget("b")},
			},
			failed(rGet(a1), rGet(b2)), []KeyValue{a1, b2}},
		{"failure branch writes",
			&Txn{
				Compares: []Compare{cmpExists("a", CompareEqual, false)},
				Success:  []TxnOp{tput("a", "fresh")},
				Failure:  []TxnOp{tput("b", "3"), tdel("a"), tput("z", "")},
			},
			failed(rPut, rDel(1), rPut),
			[]KeyValue{kvOf("b", "3", 3, 10, 2), kvOf("z", "", 1, 10, 10)}},
		{"empty failure branch",
			&Txn{Compares: []Compare{cmpValue("missing", CompareEqual, "")}, Success: []TxnOp{tput("a", "y")}},
			failed(), []KeyValue{a1, b2}},
		{"get after put in the same branch sees the put",
			&Txn{Success: []TxnOp{tget("a"), tput("a", "y"), tget("a"), tput("n", "new"), tget("n")}},
			ok(rGet(a1), rPut, rGet(kvOf("a", "y", 2, 10, 1)), rPut, rGet(kvOf("n", "new", 1, 10, 10))),
			[]KeyValue{kvOf("a", "y", 2, 10, 1), b2, kvOf("n", "new", 1, 10, 10)}},
		{"get after delete in the same branch sees nothing",
			&Txn{Success: []TxnOp{tdel("a"), tget("a")}},
			ok(rDel(1), rMissing), []KeyValue{b2}},
		{"delete of a missing key deletes nothing",
			&Txn{Success: []TxnOp{tdel("nope"), tget("nope")}},
			ok(rDel(0), rMissing), []KeyValue{a1, b2}},
		{"compares see the state before the txn",
			&Txn{
				Compares: []Compare{cmpValue("a", CompareEqual, "1"), cmpValue("a", CompareEqual, "1")},
				Success:  []TxnOp{tput("a", "2")},
			},
			ok(rPut), []KeyValue{kvOf("a", "2", 2, 10, 1), b2}},
		// Validate rejects these, but Apply must still be deterministic.
		{"unvalidated: two puts of one key apply in order",
			&Txn{Success: []TxnOp{tput("a", "x"), tput("a", "y")}},
			ok(rPut, rPut), []KeyValue{kvOf("a", "y", 3, 10, 1), b2}},
		{"unvalidated: put then delete leaves the key deleted",
			&Txn{Success: []TxnOp{tput("c", "x"), tdel("c")}},
			ok(rPut, rDel(1)), []KeyValue{a1, b2}},
		{"unvalidated: delete then put recreates the key",
			&Txn{Success: []TxnOp{tdel("a"), tput("a", "again")}},
			ok(rDel(1), rPut), []KeyValue{kvOf("a", "again", 1, 10, 10), b2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			for i, cmd := range setup {
				if _, err := s.Apply(uint64(i+1), cmd); err != nil {
					t.Fatal(err)
				}
			}
			before := s.Snapshot()
			got, err := s.Apply(10, Command{Op: OpTxn, Txn: tt.txn})
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Status: StatusOK, Revision: 10, Txn: tt.want}
			if !equalResult(got, want) {
				t.Fatalf("result %s, want %s", fmtResult(got), fmtResult(want))
			}
			checkPairs(t, "state", collect(s.Snapshot()), tt.state)
			checkPairs(t, "snapshot taken before", collect(before), []KeyValue{a1, b2})
			if s.Applied() != 10 {
				t.Fatalf("Applied = %d", s.Applied())
			}
		})
	}
}

func TestApplyTxnErrors(t *testing.T) {
	s := NewStore()
	if _, err := s.Apply(1, put("a", "1", Cond{})); err != nil {
		t.Fatal(err)
	}
	good := txnCmd(nil, []TxnOp{tput("a", "2")}, nil)
	for _, tc := range []struct {
		name  string
		index uint64
		cmd   Command
		want  error
	}{
		{"unknown compare target", 2, txnCmd([]Compare{{Key: []byte("a"), Target: 9, Op: CompareEqual}}, []TxnOp{tput("a", "2")}, nil), ErrUnknownOp},
		{"zero compare target", 2, txnCmd([]Compare{{Key: []byte("a"), Op: CompareEqual}}, nil, nil), ErrUnknownOp},
		{"unknown compare op", 2, txnCmd([]Compare{{Key: []byte("a"), Target: TargetVersion, Op: 7}}, nil, nil), ErrUnknownOp},
		{"ordering op on exists", 2, txnCmd([]Compare{{Key: []byte("a"), Target: TargetExists, Op: CompareLess}}, nil, nil), ErrUnknownOp},
		{"unknown op type in failure", 2, txnCmd(nil, []TxnOp{tput("a", "2")}, []TxnOp{{Type: 4, Key: []byte("a")}}), ErrUnknownOp},
		{"zero op type in success", 2, txnCmd(nil, []TxnOp{tput("a", "2"), {Key: []byte("a")}}, nil), ErrUnknownOp},
		{"stale index", 1, good, ErrBadIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(tc.index, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if kv, _ := s.Get([]byte("a")); s.Applied() != 1 || !equalKV(kv, kvOf("a", "1", 1, 1, 1)) {
				t.Fatalf("store changed: applied %d, a = %s", s.Applied(), fmtKV(kv))
			}
		})
	}
	if r, err := s.Apply(2, good); err != nil || r.Revision != 2 {
		t.Fatalf("Apply(2) = %s, %v", fmtResult(r), err)
	}
}

func TestTxnValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		txn  *Txn
		want string // "" for valid
	}{
		{"nil", nil, ""},
		{"empty", &Txn{}, ""},
		{"every target and op",
			&Txn{Compares: []Compare{
				cmpValue("a", CompareGreaterEqual, "x"), cmpNum("a", TargetVersion, CompareLessEqual, 1),
				cmpNum("a", TargetRevision, CompareNotEqual, 1), cmpNum("a", TargetCreateRevision, CompareGreater, 1),
				cmpExists("a", CompareNotEqual, true), cmpExists("a", CompareEqual, false),
			}}, ""},
		{"gets may repeat and read written keys",
			&Txn{Success: []TxnOp{tget("a"), tput("a", "1"), tget("a"), tget("a")}}, ""},
		{"each branch may write a key once",
			&Txn{Success: []TxnOp{tput("a", "1"), tdel("b")}, Failure: []TxnOp{tdel("a"), tput("b", "2")}}, ""},
		{"two puts", &Txn{Success: []TxnOp{tput("a", "1"), tput("b", "1"), tput("a", "2")}},
			`success[2]: key "a" is already written by success[0]`},
		{"put and delete", &Txn{Failure: []TxnOp{tget("a"), tput("a", "1"), tdel("a")}},
			`failure[2]: key "a" is already written by failure[1]`},
		{"two deletes", &Txn{Success: []TxnOp{tdel("a"), tdel("a")}}, `success[1]: key "a" is already written by success[0]`},
		{"empty key twice", &Txn{Success: []TxnOp{tdel(""), tput("", "")}}, `success[1]: key "" is already`},
		{"unknown target", &Txn{Compares: []Compare{cmpValue("a", CompareEqual, ""), {Target: 6, Op: CompareEqual}}}, "compare[1]: op == on target target(6)"},
		{"ordering op on exists", &Txn{Compares: []Compare{{Target: TargetExists, Op: CompareGreaterEqual}}}, "compare[0]: op >= on target exists"},
		{"unknown op type", &Txn{Failure: []TxnOp{{Type: 9}}}, "failure[0]: unknown operation txnop(9)"},
	} {
		err := tc.txn.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrInvalidTxn) || !strings.Contains(fmt.Sprint(err), tc.want)):
			t.Errorf("%s: error %v, want ErrInvalidTxn mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestCommandValidate(t *testing.T) {
	for _, tc := range []struct {
		cmd  Command
		want error
	}{
		{put("k", "v", Cond{CreateOnly: true}), nil},
		{del("k", Cond{}), nil},
		{Command{Op: OpTxn}, nil},
		{txnCmd([]Compare{cmpExists("a", CompareEqual, true)}, []TxnOp{tput("a", "1")}, []TxnOp{tdel("a")}), nil},
		{txnCmd(nil, []TxnOp{tput("a", "1"), tdel("a")}, nil), ErrInvalidTxn},
		{txnCmd([]Compare{{Key: []byte("a"), Target: 8, Op: CompareEqual}}, nil, nil), ErrInvalidTxn},
		{Command{Op: 9}, ErrUnknownOp},
		{Command{}, ErrUnknownOp},
	} {
		if err := tc.cmd.Validate(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Validate(%v %s) = %v, want %v", tc.cmd.Op, fmtTxn(tc.cmd.Txn), err, tc.want)
		}
	}
}

// sampleTxns are round-tripped by the codec tests and seed the fuzzers.
func sampleTxns() []Command {
	return []Command{
		{Op: OpTxn},
		txnCmd(nil, nil, nil),
		txnCmd([]Compare{
			cmpValue("a", CompareEqual, "x"), cmpNum("b", TargetVersion, CompareGreater, 2),
			cmpNum("c", TargetRevision, CompareLess, 100), cmpExists("d", CompareEqual, false),
			cmpNum("e", TargetCreateRevision, CompareNotEqual, -1), cmpValue("", CompareLessEqual, ""),
			cmpExists("\x00\xff", CompareNotEqual, true), cmpNum("f", TargetVersion, CompareGreaterEqual, math.MinInt64),
		},
			[]TxnOp{tput("a", "y"), tdel("b"), tget("c"), tput("", "")},
			[]TxnOp{tget("a")}),
		txnCmd(nil, nil, []TxnOp{tput(strings.Repeat("k", 200), strings.Repeat("v", 300))}),
		txnCmd(nil, []TxnOp{{Type: TxnPut, Key: []byte("n"), Value: []byte("12"), Kind: KindJSON}, tput("s", "12")},
			[]TxnOp{{Type: TxnPut, Key: []byte("o"), Value: []byte(`{"a":[1,2]}`), Kind: KindJSON}}),
	}
}

func sampleTxnResults() []Result {
	return []Result{
		{Status: StatusOK, Revision: 7, Txn: &TxnResult{Succeeded: true}},
		{Status: StatusOK, Revision: 7, Txn: &TxnResult{}},
		{Status: StatusOK, Revision: 1 << 40, Txn: &TxnResult{Succeeded: true, Responses: []TxnResponse{
			{Type: TxnPut}, {Type: TxnDelete, Deleted: 1}, {Type: TxnDelete}, {Type: TxnGet},
			{Type: TxnGet, Found: true, KV: kvOf("c", "v", 3, 99, 7)},
			{Type: TxnGet, Found: true}, // a found pair may encode as all zero
			{Type: TxnGet, Found: true, KV: kvOf("\xff", strings.Repeat("v", 200), math.MaxInt64, math.MaxInt64, 1)},
		}}},
		{Status: StatusConflict, Current: kvOf("k", "v", 1, 2, 2), Txn: &TxnResult{Responses: []TxnResponse{{Type: TxnDelete, Deleted: -5}}}},
		{Status: StatusOK, Revision: 9, Txn: &TxnResult{Succeeded: true, Responses: []TxnResponse{
			{Type: TxnGet, Found: true, KV: kvOf("s", "12", 1, 2, 2)},
			{Type: TxnGet, Found: true, KV: KeyValue{Key: []byte("n"), Value: []byte("12"), Kind: KindJSON, Version: 1, Revision: 3, CreateRevision: 3}},
		}}},
	}
}

func TestTxnCodecRoundTrip(t *testing.T) {
	for _, c := range sampleTxns() {
		b := c.Marshal()
		if len(b) != c.size() {
			t.Errorf("%s: size %d, encoded %d bytes", fmtTxn(c.Txn), c.size(), len(b))
		}
		got, err := UnmarshalCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", fmtTxn(c.Txn), err)
		}
		if got.Op != OpTxn || got.Txn == nil || !equalCommand(got, c) {
			t.Fatalf("round trip of %s gave %v %s", fmtTxn(c.Txn), got.Op, fmtTxn(got.Txn))
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%s: re-encoding differs", fmtTxn(c.Txn))
		}
	}
	// Key, Value and Cond mean nothing to a txn and are not encoded; nor are
	// the operands a compare's target does not use, nor a get's value.
	c := Command{Op: OpTxn, Key: []byte("k"), Value: []byte("v"), Cond: Cond{CreateOnly: true, PrevVersion: i64(3)},
		Txn: &Txn{
			Compares: []Compare{{Key: []byte("a"), Target: TargetExists, Op: CompareEqual, Exists: true, Value: []byte("x"), Number: 9}},
			Success:  []TxnOp{{Type: TxnGet, Key: []byte("g"), Value: []byte("ignored")}},
		}}
	got, err := UnmarshalCommand(c.Marshal())
	want := txnCmd([]Compare{cmpExists("a", CompareEqual, true)}, []TxnOp{tget("g")}, nil)
	if err != nil || got.Key != nil || got.Value != nil || got.Cond.CreateOnly || got.Cond.PrevVersion != nil ||
		got.Txn.Compares[0].Value != nil || got.Txn.Compares[0].Number != 0 || got.Txn.Success[0].Value != nil ||
		!bytes.Equal(got.Marshal(), want.Marshal()) {
		t.Fatalf("decoded %+v %s, %v; want %s", got, fmtTxn(got.Txn), err, fmtTxn(want.Txn))
	}

	for _, r := range sampleTxnResults() {
		b := r.Marshal()
		if len(b) != r.size() {
			t.Errorf("%s: size %d, encoded %d", fmtResult(r), r.size(), len(b))
		}
		got, err := UnmarshalResult(b)
		if err != nil {
			t.Fatalf("%s: %v", fmtResult(r), err)
		}
		if !equalResult(got, r) {
			t.Fatalf("round trip of %s gave %s", fmtResult(r), fmtResult(got))
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%s: re-encoding differs", fmtResult(r))
		}
	}
}

func TestUnmarshalTxnRejects(t *testing.T) {
	valid := sampleTxns()[2].Marshal()
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"flags on a txn", []byte{1, 3, cmdCreateOnly, 0, 0, 0}, "flags 0x1 on a txn"},
		{"missing counts", []byte{1, 3, 0}, "truncated compare count"},
		{"missing branches", []byte{1, 3, 0, 0}, "truncated success count"},
		{"missing failure", []byte{1, 3, 0, 0, 0}, "truncated failure count"},
		{"trailing byte", []byte{1, 3, 0, 0, 0, 0, 0}, "1 trailing bytes"},
		{"unknown target", []byte{1, 3, 0, 1, 6, 1, 1, 'a', 0, 0, 0}, "unknown op 1 on target 6"},
		{"zero target", []byte{1, 3, 0, 1, 0, 1, 1, 'a', 0, 0, 0}, "unknown op 1 on target 0"},
		{"unknown op", []byte{1, 3, 0, 1, byte(TargetVersion), 7, 1, 'a', 0, 0, 0}, "unknown op 7 on target 2"},
		{"ordering op on exists", []byte{1, 3, 0, 1, byte(TargetExists), byte(CompareLess), 1, 'a', 0, 0, 0}, "unknown op 3 on target 5"},
		{"exists byte 2", []byte{1, 3, 0, 1, byte(TargetExists), 1, 1, 'a', 2, 0, 0}, "compare exists is 2"},
		{"unknown op type", []byte{1, 3, 0, 0, 1, 4, 1, 'a', 0}, "success op 0: unknown type 4"},
		{"zero op type", []byte{1, 3, 0, 0, 0, 1, 0, 0}, "failure op 0: unknown type 0"},
		{"huge compare count", []byte{1, 3, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}, "compare count 4294967295 exceeds"},
		{"compare count beyond bytes", []byte{1, 3, 0, 2, 2, 1, 1, 'a', 0, 0, 0}, "compare count 2 exceeds what the 7 bytes left"},
		{"op count beyond bytes", []byte{1, 3, 0, 0, 3, 3, 0, 0}, "success count 3 exceeds"},
		{"non-minimal count", []byte{1, 3, 0, 0x80, 0x00, 0, 0}, "not a minimal varint"},
	}
	for i := range len(valid) {
		tests = append(tests, struct {
			name string
			b    []byte
			want string
		}{"truncated valid txn", valid[:i], ""})
	}
	for _, tt := range tests {
		c, err := UnmarshalCommand(tt.b)
		if err == nil {
			t.Errorf("%s (% x): accepted as %v %s", tt.name, tt.b, c.Op, fmtTxn(c.Txn))
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s (% x): error %q, want ErrMalformed mentioning %q", tt.name, tt.b, err, tt.want)
		}
	}

	validRes := sampleTxnResults()[2].Marshal()
	bad := [][]byte{
		{1, 0, resTxn, 0},                   // truncated succeeded
		{1, 0, resTxn, 0, 2, 0},             // succeeded 2
		{1, 0, resTxn, 0, 1},                // truncated count
		{1, 0, resTxn, 0, 1, 2, 1},          // count beyond bytes
		{1, 0, resTxn, 0, 1, 1, 4},          // unknown response type
		{1, 0, resTxn, 0, 1, 1, 0},          // zero response type
		{1, 0, resTxn, 0, 1, 1, 3, 2},       // found 2
		{1, 0, resTxn, 0, 1, 1, 3, 1, 0, 0}, // truncated found pair
		{1, 0, resTxn, 0, 1, 0, 0},          // trailing byte
	}
	for i := range len(validRes) {
		bad = append(bad, validRes[:i])
	}
	for _, b := range bad {
		if r, err := UnmarshalResult(b); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: got %s, %v; want ErrMalformed", b, fmtResult(r), err)
		}
	}
}

func fmtTxn(t *Txn) string {
	if t == nil {
		return "txn<nil>"
	}
	var b strings.Builder
	b.WriteString("txn{")
	for _, c := range t.Compares {
		fmt.Fprintf(&b, " %v(%q) %v", c.Target, c.Key, c.Op)
		switch c.Target {
		case TargetValue:
			fmt.Fprintf(&b, " %q", c.Value)
		case TargetExists:
			fmt.Fprintf(&b, " %v", c.Exists)
		default:
			fmt.Fprintf(&b, " %d", c.Number)
		}
	}
	for _, br := range [][]TxnOp{t.Success, t.Failure} {
		b.WriteString(" |")
		for _, op := range br {
			fmt.Fprintf(&b, " %v %q", op.Type, op.Key)
			if op.Type == TxnPut {
				fmt.Fprintf(&b, "=%q", op.Value)
			}
		}
	}
	return b.String() + " }"
}

// applyTxn is the reference semantics of a transaction, written without
// looking at the Store's.
func (m model) applyTxn(index uint64, t *Txn) Result {
	rev := int64(index)
	holds := func(c Compare) bool {
		cur, exists := m[string(c.Key)]
		var have, want int64
		switch c.Target {
		case TargetExists:
			eq := exists == c.Exists
			return eq == (c.Op == CompareEqual)
		case TargetValue:
			if !exists {
				return false
			}
			a, b := string(cur.Value), string(c.Value)
			switch c.Op {
			case CompareEqual:
				return a == b
			case CompareNotEqual:
				return a != b
			case CompareLess:
				return a < b
			case CompareGreater:
				return a > b
			case CompareLessEqual:
				return a <= b
			default:
				return a >= b
			}
		case TargetVersion:
			have = cur.Version
		case TargetRevision:
			have = cur.Revision
		case TargetCreateRevision:
			have = cur.CreateRevision
		}
		want = c.Number
		switch c.Op {
		case CompareEqual:
			return have == want
		case CompareNotEqual:
			return have != want
		case CompareLess:
			return have < want
		case CompareGreater:
			return have > want
		case CompareLessEqual:
			return have <= want
		default:
			return have >= want
		}
	}
	ok := true
	for _, c := range t.Compares {
		ok = ok && holds(c)
	}
	ops := t.Failure
	if ok {
		ops = t.Success
	}
	res := &TxnResult{Succeeded: ok}
	for _, op := range ops {
		switch op.Type {
		case TxnPut:
			m.apply(index, Command{Op: OpPut, Key: op.Key, Value: op.Value})
			res.Responses = append(res.Responses, TxnResponse{Type: TxnPut})
		case TxnDelete:
			r := TxnResponse{Type: TxnDelete}
			if m.apply(index, Command{Op: OpDelete, Key: op.Key}).Status == StatusOK {
				r.Deleted = 1
			}
			res.Responses = append(res.Responses, r)
		case TxnGet:
			cur, found := m[string(op.Key)]
			res.Responses = append(res.Responses, TxnResponse{Type: TxnGet, Found: found, KV: cur})
		}
	}
	return Result{Status: StatusOK, Revision: rev, Txn: res}
}

// TestTxnRandomAgainstModel applies random transactions, mixed with plain
// writes, to a Store and to the reference model, through the codec as the
// Raft layer does, and compares every result and the state.
func TestTxnRandomAgainstModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x51ed270b))
	keys := []string{"", "a", "b", "b\x00", "c", "\xff"}
	values := []string{"", "0", "1", "10", "2", "\xff"}
	randKey := func() []byte { return []byte(keys[rng.IntN(len(keys))]) }
	randValue := func() []byte { return []byte(values[rng.IntN(len(values))]) }
	randCompare := func(index uint64) Compare {
		c := Compare{Key: randKey(), Target: CompareTarget(1 + rng.IntN(5)), Op: CompareOp(1 + rng.IntN(6))}
		switch c.Target {
		case TargetValue:
			c.Value = randValue()
		case TargetExists:
			c.Op = CompareOp(1 + rng.IntN(2))
			c.Exists = rng.IntN(2) == 0
		case TargetVersion:
			c.Number = int64(rng.IntN(4))
		default:
			// Near recent revisions, so that all outcomes happen.
			c.Number = max(0, int64(index)-int64(rng.IntN(30)))
		}
		return c
	}
	randOps := func() []TxnOp {
		var ops []TxnOp
		for range rng.IntN(5) {
			op := TxnOp{Type: TxnOpType(1 + rng.IntN(3)), Key: randKey()}
			if op.Type == TxnPut {
				op.Value = randValue()
			}
			ops = append(ops, op)
		}
		return ops
	}

	s := NewStore()
	m := model{}
	index := uint64(0)
	steps := 20000
	if testing.Short() {
		steps = 2000
	}
	succeeded := 0
	for step := range steps {
		index += 1 + uint64(rng.IntN(2))
		var cmd Command
		switch rng.IntN(4) {
		case 0:
			cmd = put(string(randKey()), string(randValue()), Cond{})
		default:
			tx := &Txn{Success: randOps(), Failure: randOps()}
			for range rng.IntN(4) {
				tx.Compares = append(tx.Compares, randCompare(index))
			}
			cmd = Command{Op: OpTxn, Txn: tx}
		}
		dec, err := UnmarshalCommand(cmd.Marshal())
		if err != nil {
			t.Fatalf("step %d: decode: %v", step, err)
		}
		got, err := s.Apply(index, dec)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		var want Result
		if cmd.Op == OpTxn {
			want = m.applyTxn(index, cmd.Txn)
			if want.Txn.Succeeded {
				succeeded++
			}
		} else {
			want = m.apply(index, cmd)
		}
		if !equalResult(got, want) {
			t.Fatalf("step %d: Apply(%d, %s) = %s, want %s", step, index, fmtTxn(cmd.Txn), fmtResult(got), fmtResult(want))
		}
		if res, err := UnmarshalResult(got.Marshal()); err != nil || !equalResult(res, got) {
			t.Fatalf("step %d: result round trip: %s, %v", step, fmtResult(res), err)
		}
		if step%50 == 0 {
			want, _ := m.rangeOf(nil, nil, 0)
			checkPairs(t, fmt.Sprintf("step %d", step), collect(s.Snapshot()), want)
		}
	}
	want, _ := m.rangeOf(nil, nil, 0)
	checkPairs(t, "end", collect(s.Snapshot()), want)
	// Both branches must have been exercised for the test to mean anything.
	if txns := steps * 3 / 4; succeeded < txns/10 || succeeded > txns*9/10 {
		t.Fatalf("%d of about %d txns succeeded: the random compares are lopsided", succeeded, txns)
	}
}

// TestTxnAtomicForReaders checks that readers never see part of a
// transaction: each txn moves one unit between two of a few accounts, so
// every consistent state has the same total.
func TestTxnAtomicForReaders(t *testing.T) {
	s := NewStore()
	const accounts, total = 4, 400
	key := func(i int) []byte { return fmt.Appendf(nil, "acct%d", i) }
	for i := range accounts {
		if _, err := s.Apply(uint64(i+1), Command{Op: OpPut, Key: key(i), Value: fmt.Append(nil, total/accounts)}); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(kvs []KeyValue) int {
		n := 0
		for _, kv := range kvs {
			var v int
			fmt.Sscan(string(kv.Value), &v)
			n += v
		}
		return n
	}
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			kvs, _ := s.Range(nil, nil, 10)
			if n := sum(kvs); n != total {
				errc <- fmt.Errorf("a reader saw a total of %d: %q", n, keysOf(kvs))
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	bal := make([]int, accounts)
	for i := range bal {
		bal[i] = total / accounts
	}
	writes := 5000
	if testing.Short() {
		writes = 1000
	}
	for i := range writes {
		from, to := rng.IntN(accounts), rng.IntN(accounts)
		if from == to || bal[from] == 0 {
			continue
		}
		bal[from]--
		bal[to]++
		cmd := txnCmd(
			[]Compare{cmpExists(string(key(from)), CompareEqual, true)},
			[]TxnOp{{Type: TxnPut, Key: key(from), Value: fmt.Append(nil, bal[from])}, {Type: TxnPut, Key: key(to), Value: fmt.Append(nil, bal[to])}},
			nil)
		if r, err := s.Apply(uint64(accounts+1+i), cmd); err != nil || !r.Txn.Succeeded {
			t.Fatalf("transfer %d: %s, %v", i, fmtResult(r), err)
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkApplyTxn applies transactions to a store of benchKeys pairs:
// "cas" is a compare-and-swap of one key (compare version, put); "put8"
// writes 8 keys; "get4" reads 4 keys; "failed" fails its compare and reads
// one key. Compare with BenchmarkPut for the cost of the txn machinery.
func BenchmarkApplyTxn(b *testing.B) {
	cases := []struct {
		name string
		txn  func(d *benchData, i int) *Txn
	}{
		{"cas", func(d *benchData, i int) *Txn {
			k := d.keys[i%len(d.keys)]
			return &Txn{
				Compares: []Compare{{Key: k, Target: TargetVersion, Op: CompareGreater, Number: 0}},
				Success:  []TxnOp{{Type: TxnPut, Key: k, Value: d.value}},
				Failure:  []TxnOp{{Type: TxnGet, Key: k}},
			}
		}},
		{"put8", func(d *benchData, i int) *Txn {
			t := &Txn{Success: make([]TxnOp, 8)}
			for j := range t.Success {
				t.Success[j] = TxnOp{Type: TxnPut, Key: d.keys[(8*i+j)%len(d.keys)], Value: d.value}
			}
			return t
		}},
		{"get4", func(d *benchData, i int) *Txn {
			t := &Txn{Success: make([]TxnOp, 4)}
			for j := range t.Success {
				t.Success[j] = TxnOp{Type: TxnGet, Key: d.keys[(4*i+j)%len(d.keys)]}
			}
			return t
		}},
		{"failed", func(d *benchData, i int) *Txn {
			k := d.keys[i%len(d.keys)]
			return &Txn{
				Compares: []Compare{{Key: k, Target: TargetExists, Op: CompareEqual, Exists: false}},
				Success:  []TxnOp{{Type: TxnPut, Key: k, Value: d.value}},
				Failure:  []TxnOp{{Type: TxnGet, Key: k}},
			}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s, d := benchStore(b)
			// Build the commands first: the benchmark measures Apply.
			const n = 4096
			cmds := make([]Command, n)
			for i := range cmds {
				cmds[i] = Command{Op: OpTxn, Txn: tc.txn(d, i)}
			}
			index := s.Applied()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				index++
				if _, err := s.Apply(index, cmds[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
