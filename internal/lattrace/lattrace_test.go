package lattrace

import (
	"bufio"
	"bytes"
	"testing"
)

func TestMarkRecordsOnlyWhenEnabled(t *testing.T) {
	mu.Lock()
	events = nil
	mu.Unlock()
	was := enabled
	defer func() { enabled = was }()

	enabled = false
	Mark(Commit, 7, 0)
	if len(events) != 0 {
		t.Fatalf("disabled: %d events recorded", len(events))
	}
	enabled = true
	Mark(Applied, 7, 42)
	Mark(Sent, 9, 3)
	mu.Lock()
	got := append([]event(nil), events...)
	events = nil
	mu.Unlock()
	if len(got) != 2 || got[0].ev != Applied || got[0].a != 7 || got[0].b != 42 || got[1].ev != Sent {
		t.Fatalf("events %+v", got)
	}
	if got[1].t < got[0].t || got[0].t == 0 {
		t.Fatalf("timestamps %d, %d", got[0].t, got[1].t)
	}
	var buf bytes.Buffer
	if err := writeEvents(bufio.NewWriter(&buf), got); err != nil {
		t.Fatal(err)
	}
	want := []string{"A 7 42", "s 9 3"}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%q", buf.String())
	}
	for i, l := range lines {
		if _, rest, ok := bytes.Cut(l, []byte(" ")); !ok || string(rest) != want[i] {
			t.Errorf("line %d: %q, want time then %q", i, l, want[i])
		}
	}
}
