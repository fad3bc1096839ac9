package e2e

// Bad input from hostile or careless clients (issue 4, item 6): every request
// of the table gets a clear error and changes nothing; slow-loris and idle
// connections do not keep other clients from being served.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rawRequest sends text as is on a new connection to addr and reads one
// response. It does its own framing so that the request line reaches the
// server exactly as written (no path cleaning, no re-escaping, no redirects).
func rawRequest(t *testing.T, addr, text string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// A write error is not fatal: the server may answer and close before it
	// has read everything (a body over the limit).
	_, werr := io.WriteString(conn, text)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response (write error: %v): %v", werr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// reqText is an HTTP/1.1 request with method, target (sent verbatim) and body.
func reqText(method, target, body string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s HTTP/1.1\r\nHost: distkv\r\nConnection: close\r\n", method, target)
	if body != "" || method == http.MethodPut || method == http.MethodPost {
		fmt.Fprintf(&sb, "Content-Length: %d\r\n", len(body))
	}
	sb.WriteString("\r\n")
	sb.WriteString(body)
	return sb.String()
}

// pctAll percent-encodes every byte of s.
func pctAll(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&sb, "%%%02X", s[i])
	}
	return sb.String()
}

// checkDetail fails unless body is exactly a JSON object {"detail": non-empty string}.
func checkDetail(t *testing.T, name, body string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Errorf("%s: body is not JSON: %v: %.200q", name, err, body)
		return
	}
	d, ok := m["detail"].(string)
	if !ok || d == "" || len(m) != 1 {
		t.Errorf("%s: body is not {\"detail\": \"<non-empty>\"}: %.200q", name, body)
	}
}

type kvBody struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Version int64  `json:"version"`
}

type scanBody struct {
	KVs   []kvBody `json:"kvs"`
	Count int      `json:"count"`
	More  bool     `json:"more"`
}

func decodeJSON[T any](t *testing.T, what, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: %v: %.200q", what, err, body)
	}
	return v
}

func TestBadInput(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	addr := s.addr

	// A write made before the bad input, which must survive it unchanged.
	if code, _, body := rawRequest(t, addr, reqText("PUT", "/key/keep", `{"value":"before"}`)); code != 200 {
		t.Fatalf("PUT /key/keep: %d %s", code, body)
	}

	// Keys of requests that must be refused all start with "bad/".
	big := strings.Repeat("a", 1<<20+1)
	rows := []struct {
		name    string
		req     string // whole request text
		want    int
		allow   string // expected Allow header (405)
		netHTTP bool   // answered by net/http before our handler: plain text, no JSON
	}{
		// Bodies of PUT.
		{name: "empty body", req: reqText("PUT", "/key/bad/1", ""), want: 422},
		{name: "truncated JSON", req: reqText("PUT", "/key/bad/1", `{"value":"x`), want: 422},
		{name: "truncated after colon", req: reqText("PUT", "/key/bad/1", `{"value":`), want: 422},
		{name: "malformed JSON", req: reqText("PUT", "/key/bad/1", `{value:"x"}`), want: 422},
		{name: "trailing garbage", req: reqText("PUT", "/key/bad/1", `{"value":"x"} x`), want: 422},
		{name: "two objects", req: reqText("PUT", "/key/bad/1", `{"value":"x"}{"value":"y"}`), want: 422},
		{name: "array", req: reqText("PUT", "/key/bad/1", `[]`), want: 422},
		{name: "null", req: reqText("PUT", "/key/bad/1", `null`), want: 422},
		{name: "string", req: reqText("PUT", "/key/bad/1", `"x"`), want: 422},
		// A value may be any JSON value (the prototype's value: Any), nested
		// at most 64 deep; a body field or parameter nobody knows is refused.
		{name: "value nested too deep", req: reqText("PUT", "/key/bad/1", `{"value":`+strings.Repeat("[", 65)+strings.Repeat("]", 65)+`}`), want: 422},
		{name: "unknown body field", req: reqText("PUT", "/key/bad/1", `{"value":"x","prev_verison":1}`), want: 422},
		{name: "version not an integer", req: reqText("PUT", "/key/bad/1", `{"value":"x","version":"1"}`), want: 422},
		{name: "no value", req: reqText("PUT", "/key/bad/1", `{}`), want: 422},
		{name: "value over 1 MiB", req: reqText("PUT", "/key/bad/1", `{"value":"`+big+`"}`), want: 413},
		// Content-Length of 8 MiB but only the first bytes sent: the answer
		// comes before the body, so the server does not wait for (or buffer) it.
		{name: "8 MiB body declared", req: "PUT /key/bad/1 HTTP/1.1\r\nHost: distkv\r\nContent-Length: 8388608\r\n\r\n{\"value\":\"", want: 413},

		// Keys.
		{name: "empty key GET", req: reqText("GET", "/key/", ""), want: 400},
		{name: "empty key PUT", req: reqText("PUT", "/key/", `{"value":"x"}`), want: 400},
		{name: "4097-byte key", req: reqText("PUT", "/key/bad/"+strings.Repeat("k", 4097-4), `{"value":"x"}`), want: 413},
		{name: "4097-byte key encoded", req: reqText("PUT", "/key/"+pctAll("bad/"+strings.Repeat("\xff", 4097-4)), `{"value":"x"}`), want: 413},
		// net/http refuses these request lines itself with a plain-text 400.
		{name: "bad percent-encoding %zz (net/http)", req: reqText("PUT", "/key/bad/%zz", `{"value":"x"}`), want: 400, netHTTP: true},
		{name: "truncated percent-encoding (net/http)", req: reqText("PUT", "/key/bad/%4", `{"value":"x"}`), want: 400, netHTTP: true},
		{name: "control byte in path (net/http)", req: reqText("PUT", "/key/bad/\x01", `{"value":"x"}`), want: 400, netHTTP: true},
		{name: "malformed request line (net/http)", req: "GARBAGE\r\n\r\n", want: 400, netHTTP: true},
		{name: "request line over MaxHeaderBytes (net/http)", req: reqText("GET", "/key/bad/"+strings.Repeat("h", 100<<10), ""), want: 431, netHTTP: true},

		// Conditions.
		{name: "prev_version not a number", req: reqText("PUT", "/key/bad/2?prev_version=abc", `{"value":"x"}`), want: 422},
		{name: "prev_version negative", req: reqText("PUT", "/key/bad/2?prev_version=-1", `{"value":"x"}`), want: 422},
		{name: "prev_version overflows", req: reqText("PUT", "/key/bad/2?prev_version=99999999999999999999", `{"value":"x"}`), want: 422},
		{name: "prev_version repeated", req: reqText("PUT", "/key/bad/2?prev_version=0&prev_version=0", `{"value":"x"}`), want: 422},
		{name: "prev_version string in body", req: reqText("PUT", "/key/bad/2", `{"value":"x","prev_version":"0"}`), want: 422},
		{name: "prev_version negative in body", req: reqText("PUT", "/key/bad/2", `{"value":"x","prev_version":-1}`), want: 422},
		{name: "prev_version fraction in body", req: reqText("PUT", "/key/bad/2", `{"value":"x","prev_version":0.5}`), want: 422},
		{name: "prev_version body vs query", req: reqText("PUT", "/key/bad/2?prev_version=1", `{"value":"x","prev_version":0}`), want: 422},
		{name: "create_only not a bool", req: reqText("PUT", "/key/bad/2?create_only=maybe", `{"value":"x"}`), want: 422},
		{name: "create_only on DELETE", req: reqText("DELETE", "/key/keep?create_only=true", ""), want: 422},
		{name: "prev_version bad on DELETE", req: reqText("DELETE", "/key/keep?prev_version=x", ""), want: 422},
		{name: "malformed query", req: reqText("PUT", "/key/bad/2?a=%zz", `{"value":"x"}`), want: 422},

		// Reads.
		{name: "consistency unknown", req: reqText("GET", "/key/keep?consistency=strong", ""), want: 422},
		{name: "consistency empty", req: reqText("GET", "/key/keep?consistency=", ""), want: 422},
		{name: "consistency repeated", req: reqText("GET", "/key/keep?consistency=stale&consistency=stale", ""), want: 422},
		{name: "scan consistency unknown", req: reqText("GET", "/keys?consistency=STALE", ""), want: 422},
		{name: "limit zero", req: reqText("GET", "/keys?limit=0", ""), want: 422},
		{name: "limit negative", req: reqText("GET", "/keys?limit=-1", ""), want: 422},
		{name: "limit over max", req: reqText("GET", "/keys?limit=10001", ""), want: 422},
		{name: "limit absurd", req: reqText("GET", "/keys?limit=99999999999999999999999", ""), want: 422},
		{name: "limit not a number", req: reqText("GET", "/keys?limit=ten", ""), want: 422},
		{name: "limit float", req: reqText("GET", "/keys?limit=1e3", ""), want: 422},
		{name: "continue garbage", req: reqText("GET", "/keys?continue=%FF%00garbage", ""), want: 422},

		// Methods.
		{name: "POST key", req: reqText("POST", "/key/bad/3", `{"value":"x"}`), want: 405, allow: "GET, HEAD, PUT, DELETE"},
		{name: "PATCH key", req: reqText("PATCH", "/key/bad/3", `{"value":"x"}`), want: 405, allow: "GET, HEAD, PUT, DELETE"},
		{name: "PUT keys", req: reqText("PUT", "/keys", `{"value":"x"}`), want: 405, allow: "GET, HEAD"},
		{name: "DELETE keys", req: reqText("DELETE", "/keys", ""), want: 405, allow: "GET, HEAD"},
		{name: "GET txn", req: reqText("GET", "/txn", ""), want: 405, allow: "POST"},
		{name: "POST healthz", req: reqText("POST", "/healthz", ""), want: 405, allow: "GET, HEAD"},
		{name: "unknown path", req: reqText("PUT", "/bad/key", `{"value":"x"}`), want: 404},
	}
	for _, r := range rows {
		code, hdr, body := rawRequest(t, addr, r.req)
		if code != r.want {
			t.Errorf("%s: status %d, want %d; body %.200q", r.name, code, r.want, body)
			continue
		}
		if r.allow != "" && hdr.Get("Allow") != r.allow {
			t.Errorf("%s: Allow %q, want %q", r.name, hdr.Get("Allow"), r.allow)
		}
		if r.netHTTP {
			t.Logf("%s: net/http answered %d %.60q", r.name, code, body)
			continue
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", r.name, ct)
		}
		checkDetail(t, r.name, body)
	}

	// A body of 8 MiB sent chunked (no Content-Length): refused once the
	// limit (6 MiB + 64 KiB) is passed.
	t.Run("8 MiB chunked body", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		go func() {
			w := bufio.NewWriter(conn)
			fmt.Fprintf(w, "PUT /key/bad/chunked HTTP/1.1\r\nHost: distkv\r\nTransfer-Encoding: chunked\r\n\r\n")
			chunk := strings.Repeat("a", 64<<10)
			if _, err := fmt.Fprintf(w, "%x\r\n{\"value\":\"%s\r\n", len(chunk)+10, chunk); err != nil {
				return
			}
			for sent := 0; sent < 8<<20; sent += len(chunk) {
				if _, err := fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return
				}
			}
			fmt.Fprintf(w, "2\r\n\"}\r\n0\r\n\r\n")
			w.Flush()
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("status %d, want 413: %.200q", resp.StatusCode, b)
		}
		checkDetail(t, "8 MiB chunked", string(b))
	})

	// Keys that are accepted: every byte value, invalid UTF-8, literal
	// slashes and dots. accepted counts the keys written.
	accepted := 1 // keep
	put := func(target, value string) {
		t.Helper()
		code, _, body := rawRequest(t, addr, reqText("PUT", target, `{"value":"`+value+`"}`))
		if code != 200 {
			t.Fatalf("PUT %.100q: %d %s", target, code, body)
		}
		accepted++
	}
	get := func(target string) kvBody {
		t.Helper()
		code, _, body := rawRequest(t, addr, reqText("GET", target, ""))
		if code != 200 {
			t.Fatalf("GET %.100q: %d %s", target, code, body)
		}
		return decodeJSON[kvBody](t, "GET "+target, body)
	}
	// The key as a JSON response shows it: each byte that is not part of
	// valid UTF-8 becomes U+FFFD (as encoding/json writes it).
	shown := func(key string) string {
		var sb strings.Builder
		for _, r := range key {
			sb.WriteRune(r) // range yields utf8.RuneError for each bad byte
		}
		return sb.String()
	}

	t.Run("every byte value", func(t *testing.T) {
		for b := 0; b < 256; b++ {
			put(fmt.Sprintf("/key/byte/%%%02X", b), fmt.Sprintf("%02x", b))
		}
		for b := 0; b < 256; b++ {
			key := "byte/" + string([]byte{byte(b)})
			got := get(fmt.Sprintf("/key/byte/%%%02X", b))
			if want := fmt.Sprintf("%02x", b); got.Value != want || got.Key != shown(key) || got.Version != 1 {
				t.Errorf("byte %#02x: got key %q value %q version %d, want %q %q 1", b, got.Key, got.Value, got.Version, shown(key), want)
			}
			// A scan of exactly [key, key+"\x00") finds this key alone: it is
			// stored byte for byte.
			q := "start=" + pctAll(key) + "&end=" + pctAll(key+"\x00")
			code, _, body := rawRequest(t, addr, reqText("GET", "/keys?"+q, ""))
			sc := decodeJSON[scanBody](t, "scan", body)
			if code != 200 || sc.Count != 1 || len(sc.KVs) != 1 || sc.KVs[0].Value != fmt.Sprintf("%02x", b) {
				t.Errorf("byte %#02x: scan %s: %d %.200s", b, q, code, body)
			}
		}
		// One key holding all 256 bytes.
		var all []byte
		for b := 0; b < 256; b++ {
			all = append(all, byte(b))
		}
		key := "all/" + string(all)
		put("/key/"+pctAll(key), "all")
		if got := get("/key/" + pctAll(key)); got.Value != "all" || got.Key != shown(key) {
			t.Errorf("all bytes: got key %q value %q", got.Key, got.Value)
		}
		code, _, body := rawRequest(t, addr, reqText("GET", "/keys?prefix=byte/&limit=1000", ""))
		if sc := decodeJSON[scanBody](t, "scan byte/", body); code != 200 || sc.Count != 256 || sc.More {
			t.Errorf("scan prefix byte/: %d count %d more %v", code, sc.Count, sc.More)
		}
	})

	t.Run("invalid UTF-8 keys", func(t *testing.T) {
		// Three different keys that all read back as "utf/\ufffd..." in JSON;
		// each keeps its own value, so none was normalized into another.
		keys := map[string]string{
			"/key/utf/%FF%FE":    "fffe",
			"/key/utf/%C3%28":    "c328",
			"/key/utf/%EF%BF%BD": "efbfbd", // U+FFFD itself, valid UTF-8
			"/key/utf/%ED%A0%80": "eda080", // a UTF-16 surrogate, invalid in UTF-8
		}
		for target, v := range keys {
			put(target, v)
		}
		for target, v := range keys {
			if got := get(target); got.Value != v {
				t.Errorf("GET %q: value %q, want %q", target, got.Value, v)
			}
		}
		// The same bytes sent raw (not percent-encoded) name the same key.
		if got := get("/key/utf/\xff\xfe"); got.Value != "fffe" {
			t.Errorf("GET raw /key/utf/\\xff\\xfe: value %q, want fffe", got.Value)
		}
	})

	t.Run("slashes and dots are literal", func(t *testing.T) {
		cases := []struct{ put, get, key string }{
			{"/key/lit/a%2F..%2Fb", "/key/lit/a/../b", "lit/a/../b"},
			{"/key/lit/x/../y", "/key/lit/x%2F..%2Fy", "lit/x/../y"},
			{"/key/lit//c", "/key/lit%2F%2Fc", "lit//c"},
			{"/key/lit/./d", "/key/lit%2F.%2Fd", "lit/./d"},
			{"/key/lit/%2E%2E", "/key/lit/..", "lit/.."},
			{"/key/../lit", "/key/%2E%2E/lit", "../lit"},
			{"/key/lit/e/", "/key/lit%2Fe%2F", "lit/e/"},
			{"/key/lit/f+g", "/key/lit/f%2Bg", "lit/f+g"},
		}
		for i, c := range cases {
			v := fmt.Sprintf("lit%d", i)
			put(c.put, v)
			got := get(c.get)
			if got.Key != c.key || got.Value != v {
				t.Errorf("PUT %s, GET %s: key %q value %q, want key %q value %q", c.put, c.get, got.Key, got.Value, c.key, v)
			}
		}
		// The cleaned forms were not written.
		for _, p := range []string{"/key/b", "/key/lit/b", "/key/y", "/key/lit/y", "/key/lit/c", "/key/lit/d", "/key/lit", "/key/lit/e"} {
			if code, _, body := rawRequest(t, addr, reqText("GET", p, "")); code != 404 {
				t.Errorf("GET %s: %d %s, want 404", p, code, body)
			}
		}
	})

	// Boundary: a key of exactly 4096 bytes is accepted.
	put("/key/"+pctAll("max/"+strings.Repeat("\xff", 4096-4)), "max")

	// Nothing changed by bad input: the earlier write is intact, no "bad/"
	// key exists, and the store holds exactly the accepted keys.
	if got := get("/key/keep"); got.Value != "before" || got.Version != 1 {
		t.Errorf("keep after bad input: value %q version %d, want before 1", got.Value, got.Version)
	}
	code, _, body := rawRequest(t, addr, reqText("GET", "/keys?limit=10000", ""))
	sc := decodeJSON[scanBody](t, "scan all", body)
	if code != 200 || sc.More {
		t.Fatalf("scan: %d more=%v", code, sc.More)
	}
	for _, kv := range sc.KVs {
		if strings.HasPrefix(kv.Key, "bad") {
			t.Errorf("key %q written by a rejected request", kv.Key)
		}
	}
	if sc.Count != accepted {
		t.Errorf("scan finds %d keys, %d were written", sc.Count, accepted)
	}
	if code, body := do(t, "GET", "http://"+addr+"/healthz", ""); code != 200 {
		t.Errorf("healthz after bad input: %d %s", code, body)
	}
}

// serverFDs counts the open file descriptors of the server process, or -1.
func serverFDs(s *server) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// settledFDs is serverFDs once it stops falling (connections of earlier steps
// may still be closing), waiting at most 3 s.
func settledFDs(s *server) int {
	n := serverFDs(s)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		m := serverFDs(s)
		if m >= n {
			return n
		}
		n = m
	}
	return n
}

func TestSlowAndIdleClients(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	addr := s.addr
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	// fresh opens a new connection per request, so that accepting works too.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	// timed sends one request and fails if it is not answered with want in < 1 s.
	timed := func(c *http.Client, method, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s %s took %v", method, path, d)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
	}
	traffic := func(tag string, d time.Duration) int {
		t.Helper()
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			c := client
			if n%2 == 1 {
				c = fresh
			}
			p := fmt.Sprintf("/key/%s/%d", tag, n)
			timed(c, "PUT", p, `{"value":"v"}`, 200)
			timed(c, "GET", p, "", 200)
		}
		return n
	}

	// A probe trickling a header slower than ReadHeaderTimeout (10 s) allows
	// in total: the server must drop it. It runs alongside everything below.
	probeStart := time.Now()
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	probeClosed := make(chan time.Duration, 1)
	go func() {
		io.WriteString(probe, "GET /healthz HTTP/1.1\r\nHost: distkv\r\nX-Slow: ")
		for {
			time.Sleep(200 * time.Millisecond)
			if _, err := probe.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	go func() {
		var b [512]byte
		probe.Read(b[:]) // returns when the server closes the connection
		probeClosed <- time.Since(probeStart)
	}()

	t.Run("slow loris", func(t *testing.T) {
		const n = 200
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var dropped atomic.Int32
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := fmt.Sprintf("PUT /key/loris/%d HTTP/1.1\r\nHost: distkv\r\nX-Slow: ", i)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					b := byte('a')
					if j < len(msg) {
						b = msg[j]
					}
					if _, err := c.Write([]byte{b}); err != nil {
						dropped.Add(1)
						return
					}
				}
			}()
		}
		ops := traffic("loris-ok", 3*time.Second)
		close(stop)
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
		t.Logf("%d PUT+GET pairs under 1 s each while %d connections trickled a header (%d dropped by the server)", ops, n, dropped.Load())
		if ops < 10 {
			t.Errorf("only %d operations in 3 s", ops)
		}
	})

	t.Run("idle connections", func(t *testing.T) {
		n := 2000
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
		// Both this process and the server (which raises its soft limit to
		// the same hard limit, as Go programs do) hold one fd per connection.
		if max := int(rl.Cur) - 300; max < n {
			n = max
			t.Logf("RLIMIT_NOFILE is %d: opening %d idle connections", rl.Cur, n)
		}
		if n < 100 {
			t.Skipf("RLIMIT_NOFILE %d too low", rl.Cur)
		}
		base := settledFDs(s)
		conns := make([]net.Conn, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var dialErr error
		next := atomic.Int32{}
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						mu.Lock()
						dialErr = err
						mu.Unlock()
						return
					}
					conns[i] = c
				}
			}()
		}
		wg.Wait()
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		if dialErr != nil {
			t.Fatalf("opening %d idle connections: %v", n, dialErr)
		}
		// The server has accepted them (it holds an fd for each).
		if base >= 0 {
			deadline := time.Now().Add(3 * time.Second)
			for serverFDs(s) < base+n*9/10 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if got := serverFDs(s); got < base+n*9/10 {
				t.Errorf("server holds %d fds with %d idle connections open, %d before", got, n, base)
			}
		}
		ops := traffic("idle-ok", 2*time.Second)
		t.Logf("%d PUT+GET pairs under 1 s each with %d idle connections open", ops, n)
		for i, c := range conns {
			c.Close()
			conns[i] = nil
		}
		// The server lets go of them.
		if base >= 0 {
			deadline := time.Now().Add(5 * time.Second)
			for serverFDs(s) > base+20 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if got := serverFDs(s); got > base+20 {
				t.Errorf("server holds %d fds after the idle connections closed, %d before", got, base)
			}
		}
		timed(fresh, "GET", "/healthz", "", 200)
		timed(client, "GET", "/readyz", "", 200)
	})

	// The trickling probe was cut off by ReadHeaderTimeout (10 s), with no
	// answer, and not long after.
	select {
	case d := <-probeClosed:
		if d < 9*time.Second {
			t.Errorf("trickling connection closed after %v, before ReadHeaderTimeout", d)
		}
		t.Logf("trickling connection closed by the server after %v", d.Round(100*time.Millisecond))
	case <-time.After(time.Until(probeStart.Add(15 * time.Second))):
		t.Errorf("trickling connection still open after 15 s (ReadHeaderTimeout is 10 s)")
	}
	timed(fresh, "GET", "/healthz", "", 200)
}
