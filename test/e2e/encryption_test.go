package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startEncrypted starts a server whose start may legitimately fail (a wrong
// key): it returns the server once ready, or its log once it has exited.
func startEncrypted(t *testing.T, dataDir, addr string, extra ...string) (*server, string) {
	t.Helper()
	args := append([]string{"server", "--id", "n1", "--data-dir", dataDir, "--http", addr,
		"--peer", freePort(t), "--tick", "20ms", "--snapshot-entries", "20"}, extra...)
	s := launch(t, dataDir, addr, args)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return nil, readLog(t, s)
		default:
		}
		if code, _ := doQuiet("http://" + addr + "/readyz"); code == 200 {
			return s, ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server on %s neither ready nor exited after 15s:\n%s", addr, readLog(t, s))
	return nil, ""
}

// probeClient gives up on a node that does not answer.
var probeClient = &http.Client{Timeout: 2 * time.Second}

// doQuiet is a GET that reports a refused connection as code 0.
func doQuiet(url string) (int, error) {
	resp, err := probeClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEncryptionAtRest: with --encryption-key-file no value written through
// the API is in any byte under the data directory (WAL and snapshots), every
// file is 0600 in a 0700 directory, a start without the key or with another
// stops saying so, and the node restarts, rotates its master key at a start
// and serves every value throughout. (distkv encryption rotate, which works
// offline, is tested in cmd/distkv.)
func TestEncryptionAtRest(t *testing.T) {
	keys := t.TempDir()
	k1, k2, wrong := writeKey(t, keys, "k1"), writeKey(t, keys, "k2"), writeKey(t, keys, "wrong")
	dataDir := filepath.Join(t.TempDir(), "n1")
	addr := freePort(t)
	base := "http://" + addr
	s, log := startEncrypted(t, dataDir, addr, "--encryption-key-file", k1)
	if s == nil {
		t.Fatalf("start with a new key failed:\n%s", log)
	}

	// Random values: compression leaves them as they are, so a copy in the
	// clear would show.
	values := map[string]string{}
	for i := range 60 {
		b := make([]byte, 16)
		rand.Read(b)
		key, val := fmt.Sprintf("key%02d", i), "secret-"+hex.EncodeToString(b)
		values[key] = val
		if code, body := do(t, "PUT", base+"/key/"+key, `{"value":"`+val+`"}`); code != 200 {
			t.Fatalf("PUT %s: %d %s", key, code, body)
		}
	}
	checkAll := func() {
		t.Helper()
		for key, val := range values {
			if code, body := do(t, "GET", base+"/key/"+key, ""); code != 200 || !strings.Contains(body, val) {
				t.Fatalf("GET %s: %d %s, want %s", key, code, body, val)
			}
		}
	}
	checkAll()
	if code := s.stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}

	snaps, _ := filepath.Glob(filepath.Join(dataDir, "snap", "*.snap"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot was written: the check below would not cover snapshots")
	}
	err := filepath.Walk(dataDir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("directory %s: mode %v, want 0700", path, fi.Mode().Perm())
			}
			return nil
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for key, val := range values {
			if bytes.Contains(b, []byte(val)) {
				t.Errorf("%s holds the value of %s in the clear", path, key)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The log holds the values, readable with the key.
	out, err := run(t, "wal", "dump", dataDir, "--encryption-key-file", k1)
	if err != nil || !strings.Contains(out, values["key59"]) {
		t.Fatalf("wal dump with the key: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", nil, "is encrypted (it has a keys file): start with --encryption-key-file"},
		{"wrong key", []string{"--encryption-key-file", wrong}, "wrong encryption key"},
	} {
		if s, log := startEncrypted(t, dataDir, addr, tc.args...); s != nil || !strings.Contains(log, tc.want) {
			t.Fatalf("%s: started (%v) or said\n%s\nwant %q", tc.name, s != nil, log, tc.want)
		}
	}

	// Rotation at a start: the new master key plus the old one.
	s, log = startEncrypted(t, dataDir, addr, "--encryption-key-file", k2, "--old-encryption-key-file", k1)
	if s == nil {
		t.Fatalf("start rotating to a new key:\n%s", log)
	}
	checkAll()
	s.stop()
	if s, log := startEncrypted(t, dataDir, addr, "--encryption-key-file", k1); s != nil || !strings.Contains(log, "wrong encryption key") {
		t.Fatalf("the retired key: started (%v) or said\n%s", s != nil, log)
	}
	// The new key alone from now on.
	s, log = startEncrypted(t, dataDir, addr, "--encryption-key-file", k2)
	if s == nil {
		t.Fatalf("start with the new key alone:\n%s", log)
	}
	checkAll()
	s.stop()
}
