package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDamagedWALRefusesToStart flips one bit inside an early frame of a real
// server's WAL and checks that the server refuses to start with an error that
// names the segment file and the byte offset, and that wal verify reports the
// same place.
func TestDamagedWALRefusesToStart(t *testing.T) {
	addr := freePort(t)
	dataDir := filepath.Join(t.TempDir(), "n1")
	s := startServer(t, dataDir, addr)
	for i := 0; i < 20; i++ {
		if code, body := do(t, http.MethodPut, fmt.Sprintf("http://%s/key/k%d", addr, i), `{"value":"some value"}`); code != 200 {
			t.Fatalf("put: %d %s", code, body)
		}
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	out, err := run(t, "wal", "verify", dataDir)
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("wal verify on a healthy log: %v\n%s", err, out)
	}

	segs, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no WAL segment found")
	}
	seg := segs[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit a third of the way in: inside an early frame, with later frames after it.
	pos := len(data) / 3
	data[pos] ^= 0x10
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := command(t, "server", "--id", "n1", "--data-dir", dataDir, "--http", freePort(t), "--peer", freePort(t))
	done := make(chan struct{})
	var outb []byte
	go func() { outb, _ = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server with a damaged WAL did not exit")
	}
	if cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("server started on a damaged WAL:\n%s", outb)
	}
	msg := string(outb)
	base := filepath.Base(seg)
	if !strings.Contains(msg, base) || !regexp.MustCompile(`offset \d+`).MatchString(msg) {
		t.Fatalf("start-up error does not name the file %s and an offset:\n%s", base, msg)
	}
	t.Logf("start-up refused: %s", strings.TrimSpace(msg))

	out, err = run(t, "wal", "verify", dataDir)
	if err == nil || !strings.Contains(out, base) {
		t.Fatalf("wal verify did not report the damage (err %v):\n%s", err, out)
	}
}
