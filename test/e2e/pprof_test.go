package e2e

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"
)

// TestPprofBehindFlag checks that --pprof-addr serves Go's profiles on their
// own listener, away from the client API.
func TestPprofBehindFlag(t *testing.T) {
	addr, paddr := freePort(t), freePort(t)
	startServer(t, filepath.Join(t.TempDir(), "n1"), addr, "--pprof-addr", paddr)
	resp, err := http.Get("http://" + paddr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) < 100 {
		t.Fatalf("heap profile: %d, %d bytes", resp.StatusCode, len(body))
	}
	if code, _ := do(t, http.MethodGet, "http://"+addr+"/debug/pprof/heap", ""); code != 404 {
		t.Fatalf("the client API serves profiles too: %d", code)
	}
}
