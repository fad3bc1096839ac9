package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// curl runs the real curl with the prototype README's arguments.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out)
}

// TestPrototypeWalkthrough runs the curl commands of the Python prototype's
// README against a real server and checks the bodies it shows.
func TestPrototypeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for the walkthrough (apt-get install curl)")
	}
	addr := freePort(t)
	s := startServer(t, filepath.Join(t.TempDir(), "n1"), addr)
	base := "http://" + strings.Replace(addr, "127.0.0.1", "localhost", 1)

	put := curl(t, "-X", "PUT", base+"/key/key6", "-H", "Content-Type: application/json", "-d", `{"value": "myvalue"}`)
	// The prototype's answer since its v1.5 carries key and version too.
	m := regexp.MustCompile(`^\{"status":"ok","id":(\d+),"key":"key6","version":1\}$`).FindStringSubmatch(put)
	if m == nil {
		t.Fatalf("PUT answered %q, want {\"status\":\"ok\",\"id\":N,\"key\":\"key6\",\"version\":1}", put)
	}
	putID, _ := strconv.Atoi(m[1])

	get := curl(t, base+"/key/key6")
	if want := `{"key":"key6","value":"myvalue","version":1,"revision":` + m[1] + `}`; get != want {
		t.Fatalf("GET answered %q, want %q", get, want)
	}

	del := curl(t, "-X", "DELETE", base+"/key/key6")
	dm := regexp.MustCompile(`^\{"status":"ok","id":(\d+)\}$`).FindStringSubmatch(del)
	if dm == nil {
		t.Fatalf("DELETE answered %q", del)
	}
	if delID, _ := strconv.Atoi(dm[1]); delID <= putID {
		t.Fatalf("DELETE id %d not after PUT id %d: ids must increase", delID, putID)
	}

	if got := curl(t, base+"/key/key6"); got != `{"detail":"Key not found"}` {
		t.Fatalf("GET after DELETE answered %q", got)
	}
	code := curl(t, "-o", "/dev/null", "-w", "%{http_code}", base+"/key/key6")
	if code != "404" {
		t.Fatalf("GET after DELETE status %s, want 404", code)
	}

	// The prototype's WAL format, from the real log.
	s.stop()
	out, err := run(t, "wal", "dump", s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"id": ` + m[1] + `, "operation": "SET", "key": "key6", "value": "myvalue"}`,
		`{"id": ` + dm[1] + `, "operation": "DELETE", "key": "key6", "value": null}`,
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("wal dump printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
}
