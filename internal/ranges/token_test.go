package ranges

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, last := range []string{"", "a", "key5", "\x00\xff", strings.Repeat("k", 4096)} {
		for _, rev := range []int64{0, 1, 300, 1 << 62} {
			tok := EncodeToken([]byte(last), rev)
			resume, gotRev, err := DecodeToken(tok)
			if err != nil {
				t.Fatalf("DecodeToken(EncodeToken(%q, %d)) = %v", last, rev, err)
			}
			// The scan resumes at the smallest key after last.
			if want := last + "\x00"; string(resume) != want || gotRev != rev {
				t.Fatalf("resume key of %q at %d = %q at %d, want %q", last, rev, resume, gotRev, want)
			}
		}
	}
	// The format of the tokens GET /keys handed out before scans read at a
	// revision: old tokens stay valid, and read at no fixed revision.
	if got := EncodeToken([]byte("key5"), 0); got != "AWtleTUA" {
		t.Fatalf("EncodeToken(key5) = %q, want the existing format AWtleTUA", got)
	}
}

func TestDecodeTokenErrors(t *testing.T) {
	tests := []struct{ tok, want string }{
		{"!!!", "not unpadded base64url"},
		{"AWtleTUA==", "not unpadded base64url"},
		{"", "too short"},
		{"AQ", "too short"},
		{"AAAA", "version 0, want 1 or 2"},
		{"AgBrAA", "no valid revision"},     // revision 0
		{"AoAAawA", "no valid revision"},    // revision not minimally encoded
		{"AgVrZXk1", "does not name a key"}, // no terminating zero
		{"AWtleTU", "does not name a key after a returned one"},
		{strings.Repeat("A", 100000), "longer than any this API returns"},
	}
	for _, tt := range tests {
		if _, _, err := DecodeToken(tt.tok); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeToken(%.20q) = %v, want ErrCorrupt saying %q", tt.tok, err, tt.want)
		}
	}
}

// TestTokenSurvivesSplit pages through a directory's keys, splitting the
// range the scan is in after every page: the token names a key, so the walk
// still returns every key once, in order.
func TestTokenSurvivesSplit(t *testing.T) {
	var keys []string
	for c := 'a'; c <= 'z'; c++ {
		keys = append(keys, string(c), string(c)+"1")
	}
	dir := mustDir(t, First(1, reps("n1", "n2", "n3")))
	scanPage := func(from []byte, limit int) (page []string, tok string) {
		for r := range dir.Ranges(from) {
			for _, k := range keys {
				if bytes.Compare([]byte(k), from) >= 0 && r.Contains([]byte(k)) {
					page = append(page, k)
					if len(page) == limit {
						return page, EncodeToken([]byte(k), 7)
					}
				}
			}
		}
		return page, ""
	}
	var got []string
	var from []byte
	nextID := uint64(2)
	for {
		page, tok := scanPage(from, 5)
		got = append(got, page...)
		if tok == "" {
			break
		}
		var err error
		var rev int64
		if from, rev, err = DecodeToken(tok); err != nil || rev != 7 {
			t.Fatal(err)
		}
		// Split the range the next page starts in, right at the resume key
		// where possible.
		d, _ := dir.Lookup(from)
		if _, _, err := dir.Split(d.ID, from, nextID); err == nil {
			nextID++
		}
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("paged walk across splits returned %v, want %v", got, keys)
	}
	if dir.Len() < 5 {
		t.Fatalf("only %d ranges: the walk did not cross splits", dir.Len())
	}
}
