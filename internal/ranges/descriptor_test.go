package ranges

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func reps(nodes ...string) []Replica {
	var rs []Replica
	for i, n := range nodes {
		rs = append(rs, Replica{Node: n, RaftID: uint64(i + 1)})
	}
	return rs
}

func desc(id uint64, start, end string, gen uint64) Descriptor {
	d := Descriptor{ID: id, Generation: gen, Replicas: reps("n1", "n2", "n3")}
	if start != "" {
		d.Start = []byte(start)
	}
	if end != "" {
		d.End = []byte(end)
	}
	return d
}

func TestDescriptorContains(t *testing.T) {
	tests := []struct {
		start, end, key string
		want            bool
	}{
		{"", "", "", true},
		{"", "", "\xff\xff", true},
		{"", "m", "", true},
		{"", "m", "l\xff", true},
		{"", "m", "m", false},
		{"m", "", "m", true},
		{"m", "", "l", false},
		{"m", "", "zzz", true},
		{"b", "d", "c", true},
		{"b", "d", "b\x00", true},
		{"b", "d", "a", false},
		{"b", "d", "d", false},
	}
	for _, tt := range tests {
		if got := desc(1, tt.start, tt.end, 1).Contains([]byte(tt.key)); got != tt.want {
			t.Errorf("[%q, %q).Contains(%q) = %v, want %v", tt.start, tt.end, tt.key, got, tt.want)
		}
	}
}

func TestDescriptorValid(t *testing.T) {
	tests := []struct {
		name string
		d    Descriptor
		want string // "" for valid
	}{
		{"whole key space", desc(1, "", "", 1), ""},
		{"bounded", desc(1, "a", "b", 1), ""},
		{"learner beside a voter", Descriptor{ID: 1, Replicas: []Replica{{"n1", 1, false}, {"n2", 2, true}}}, ""},
		{"id 0", desc(0, "", "", 1), "range id 0"},
		{"start equals end", desc(2, "b", "b", 1), `start "b" is not before end "b"`},
		{"start after end", desc(2, "c", "b", 1), `start "c" is not before end "b"`},
		{"no replicas", Descriptor{ID: 3}, "no voting replica"},
		{"only learners", Descriptor{ID: 3, Replicas: []Replica{{"n1", 1, true}}}, "no voting replica"},
		{"empty node", Descriptor{ID: 3, Replicas: []Replica{{"", 1, false}}}, "no node name"},
		{"raft id 0", Descriptor{ID: 3, Replicas: []Replica{{"n1", 0, false}}}, "raft id 0"},
		{"node twice", Descriptor{ID: 3, Replicas: []Replica{{"n1", 1, false}, {"n1", 2, false}}}, `node "n1" holds two replicas`},
		{"raft id twice", Descriptor{ID: 3, Replicas: []Replica{{"n1", 4, false}, {"n2", 4, false}}}, `raft id 4 on nodes "n1" and "n2"`},
	}
	for _, tt := range tests {
		err := tt.d.Valid()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Valid() = %v, want nil", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Valid() = %v, want ErrInvalid saying %q", tt.name, err, tt.want)
		}
	}
}

func TestDescriptorSplit(t *testing.T) {
	d := desc(4, "b", "x", 6)
	left, right, err := d.Split([]byte("m"), 9)
	if err != nil {
		t.Fatal(err)
	}
	wantL, wantR := desc(4, "b", "m", 7), desc(9, "m", "x", 7)
	if !left.Equal(wantL) || !right.Equal(wantR) {
		t.Fatalf("Split = %v, %v; want %v, %v", left, right, wantL, wantR)
	}
	// The halves own their keys: changing one does not change d.
	left.End[0] = 'z'
	if string(d.End) != "x" || string(right.Start) != "m" {
		t.Fatalf("halves share memory with the parent: d=%v right=%v", d, right)
	}

	for _, tt := range []struct {
		key   string
		newID uint64
		want  string
	}{
		{"b", 9, "not strictly inside"},
		{"a", 9, "not strictly inside"},
		{"x", 9, "not strictly inside"},
		{"y", 9, "not strictly inside"},
		{"m", 4, "new range id 4"},
		{"m", 0, "new range id 0"},
	} {
		if _, _, err := d.Split([]byte(tt.key), tt.newID); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Split(%q, %d) = %v, want ErrInvalid saying %q", tt.key, tt.newID, err, tt.want)
		}
	}
	// An open-ended range splits anywhere after its start.
	if _, r, err := desc(1, "", "", 1).Split([]byte{0}, 2); err != nil || len(r.End) != 0 || string(r.Start) != "\x00" {
		t.Fatalf("split of the whole key space at \\x00 = %v, %v", r, err)
	}
}

func TestDescriptorMarshalRoundTrip(t *testing.T) {
	for _, d := range []Descriptor{
		desc(1, "", "", 1),
		desc(7, "", "key5", 3),
		desc(1<<63, "a\x00b", "\xff\xff", 1<<40),
		{ID: 2, Start: []byte("k"), Replicas: []Replica{{"n1", 1 << 60, false}, {"node-two", 2, true}}},
	} {
		b := d.Marshal()
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%v)) = %v", d, err)
		}
		if !got.Equal(d) {
			t.Fatalf("round trip: got %+v, want %+v", got, d)
		}
	}
	// The whole key space with three replicas: 6 bytes of header, 5 a replica.
	if n := len(desc(1, "", "", 1).Marshal()); n != 21 {
		t.Errorf("encoding of a three-replica descriptor takes %d bytes, want 21", n)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	good := desc(7, "a", "b", 3).Marshal()
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "input ends before version"},
		{"unknown version", append([]byte{2}, good[1:]...), "descriptor version 2, want 1"},
		{"truncated", good[:len(good)-1], "input ends before replica flags"},
		{"trailing byte", append(bytes.Clone(good), 0), "1 bytes after the descriptor"},
		{"non-minimal varint", []byte{1, 0x87, 0x00}, "range id is not in its shortest form"},
		{"varint overflow", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "range id overflows 64 bits"},
		{"key past end", []byte{1, 7, 3, 100, 'a'}, "start key of 100 bytes runs past the end of the input"},
		{"huge replica count", []byte{1, 7, 3, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, "replicas cannot fit"},
		{"unknown flag", []byte{1, 7, 3, 0, 0, 1, 2, 'n', '1', 1, 2}, "unknown replica flags 0x2"},
	}
	for _, tt := range tests {
		_, err := Unmarshal(tt.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Unmarshal = %v, want ErrCorrupt saying %q", tt.name, err, tt.want)
		}
	}
	// Well-formed bytes of an invalid descriptor are refused as invalid.
	if _, err := Unmarshal(desc(7, "b", "a", 1).Marshal()); !errors.Is(err, ErrInvalid) {
		t.Errorf("Unmarshal of start after end = %v, want ErrInvalid", err)
	}
}

func TestDescriptorView(t *testing.T) {
	d := Descriptor{ID: 7, End: []byte("key5"), Generation: 4,
		Replicas: []Replica{{"n3", 3, false}, {"n1", 1, false}, {"n2", 2, false}}}
	got, err := json.Marshal(d.View("n2", 123456))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":7,"start":"","end":"key5","leader":"n2","replicas":["n1","n2","n3"],"bytes":123456,"generation":4}`
	if string(got) != want {
		t.Fatalf("View JSON = %s, want %s", got, want)
	}
	d.Replicas = append(d.Replicas, Replica{"n4", 4, true})
	list, err := json.Marshal(ViewList{Ranges: []View{d.View("", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"ranges":[{"id":7,"start":"","end":"key5","leader":"","replicas":["n1","n2","n3","n4"],"learners":["n4"],"bytes":0,"generation":4}]}`
	if string(list) != want {
		t.Fatalf("ViewList JSON = %s, want %s", list, want)
	}
}
