package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/distkv/distkv/internal/auth"
)

func (f *fakeBackend) AuthState() *auth.State { return f.store.Auth() }

// authAPI is a handler with auth on over a fake backend, bootstrapped with
// root's password "rootpw", and a clock the test moves.
type authAPI struct {
	t    testing.TB
	h    *handler
	f    *fakeBackend
	now  time.Time
	root string // root's token
}

func newAuthAPI(t testing.TB) *authAPI {
	t.Helper()
	f := newFake()
	cfg := Config{Auth: &AuthConfig{HashCost: bcrypt.MinCost, TokenTTL: time.Hour, Throttle: auth.ThrottleConfig{Free: 2, Base: time.Second}}}
	hh, err := New(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	a := &authAPI{t: t, h: hh.(*handler), f: f, now: time.Unix(1_800_000_000, 0)}
	a.h.now = func() time.Time { return a.now }
	// Before the bootstrap, requests cannot be authenticated: 503.
	if rec := a.do("", "GET", "/key/x", ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before bootstrap: %d %s", rec.Code, rec.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := BootstrapAuth(ctx, f, []byte("rootpw"), bcrypt.MinCost, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// A second bootstrap (another node) changes nothing.
	secret := f.store.Auth().Secret()
	if err := BootstrapAuth(ctx, f, []byte("otherpw"), bcrypt.MinCost, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if string(f.store.Auth().Secret()) != string(secret) || f.store.Auth().CheckPassword("root", []byte("rootpw")) != nil {
		t.Fatal("a second bootstrap changed the secret or root's password")
	}
	a.root = a.login("root", "rootpw")
	return a
}

// do sends a request with the token (none if empty).
func (a *authAPI) do(token, method, target, body string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	return rec
}

// must sends a request and fails the test unless it is answered want.
func (a *authAPI) must(want int, token, method, target, body string) *httptest.ResponseRecorder {
	a.t.Helper()
	rec := a.do(token, method, target, body)
	if rec.Code != want {
		a.t.Fatalf("%s %s: %d %s; want %d", method, target, rec.Code, rec.Body, want)
	}
	return rec
}

func (a *authAPI) login(user, password string) string {
	a.t.Helper()
	rec := a.must(http.StatusOK, "", "POST", "/auth/token", `{"user":"`+user+`","password":"`+password+`"}`)
	var ans tokenAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || ans.Token == "" {
		a.t.Fatalf("token answer %s: %v", rec.Body, err)
	}
	if exp, err := time.Parse(time.RFC3339, ans.ExpiresAt); err != nil || !exp.Equal(a.now.Add(time.Hour)) {
		a.t.Fatalf("expires_at %q, want %v", ans.ExpiresAt, a.now.Add(time.Hour))
	}
	return ans.Token
}

// setup makes role app (readwrite on app/) and user alice (password
// alicepw, role app), and returns alice's token.
func (a *authAPI) setup() string {
	a.must(http.StatusOK, a.root, "PUT", "/auth/roles/app", `{"permissions":[{"prefix":"app/","access":"readwrite"}]}`)
	a.must(http.StatusOK, a.root, "PUT", "/auth/users/alice", `{"password":"alicepw","roles":["app"]}`)
	return a.login("alice", "alicepw")
}

func TestAuthTokensRefused(t *testing.T) {
	tampered := func(tok string) string {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)-1] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	cases := []struct {
		name string
		// change runs before the request and returns the token to send.
		change func(a *authAPI, tok string) string
		want   string // in the detail
	}{
		{"valid", func(a *authAPI, tok string) string { return tok }, ""},
		{"expired", func(a *authAPI, tok string) string { a.now = a.now.Add(time.Hour); return tok }, "expired"},
		{"tampered", func(a *authAPI, tok string) string { return tampered(tok) }, "invalid token"},
		{"garbage", func(a *authAPI, tok string) string { return "x" + tok }, "invalid token"},
		{"deleted user", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, a.root, "DELETE", "/auth/users/alice", "")
			return tok
		}, "revoked"},
		{"deleted and re-created", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, a.root, "DELETE", "/auth/users/alice", "")
			a.must(http.StatusOK, a.root, "PUT", "/auth/users/alice", `{"password":"alicepw","roles":["app"]}`)
			return tok
		}, "revoked"},
		{"password changed", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, a.root, "PUT", "/auth/users/alice", `{"password":"new"}`)
			return tok
		}, "revoked"},
		{"own password changed", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, tok, "PUT", "/auth/users/alice", `{"password":"new"}`)
			return tok
		}, "revoked"},
		{"roles changed", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, a.root, "PUT", "/auth/roles/other", `{"permissions":[]}`)
			a.must(http.StatusOK, a.root, "PUT", "/auth/users/alice", `{"roles":["app","other"]}`)
			return tok
		}, "revoked"},
		{"role deleted", func(a *authAPI, tok string) string {
			a.must(http.StatusOK, a.root, "DELETE", "/auth/roles/app", "")
			return tok
		}, "revoked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAuthAPI(t)
			tok := a.setup()
			// Used once before the change, so that the node has verified
			// (and cached) it.
			a.must(http.StatusNotFound, tok, "GET", "/key/app/x", "")
			tok = c.change(a, tok)
			rec := a.do(tok, "PUT", "/key/app/x", `{"value":"v"}`)
			if c.want == "" {
				if rec.Code != http.StatusOK {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
				return
			}
			if rec.Code != http.StatusUnauthorized || !strings.Contains(detail(t, rec), c.want) {
				t.Fatalf("%d %s; want 401 with %q", rec.Code, rec.Body, c.want)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if _, ok := a.f.store.Get([]byte("app/x")); ok {
				t.Fatal("the refused write was applied")
			}
		})
	}
}

func TestAuthCredentialsRequired(t *testing.T) {
	a := newAuthAPI(t)
	for _, hdr := range []string{"", "Basic cm9vdDpyb290cHc=", "Bearer", "Bearer "} {
		req := httptest.NewRequest("GET", "/keys", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d %s", hdr, rec.Code, rec.Body)
		} else {
			detail(t, rec)
		}
	}
	// Health, readiness and the UI's page stay open; so does the login.
	for _, target := range []string{"/healthz", "/readyz", "/ui/"} {
		a.must(http.StatusOK, "", "GET", target, "")
	}
	// An unknown path is still 404 for an authenticated user.
	a.must(http.StatusNotFound, a.root, "GET", "/nothing", "")
}

func TestAuthLoginThrottled(t *testing.T) {
	a := newAuthAPI(t)
	a.setup()
	bad := `{"user":"alice","password":"wrong"}`
	for range 3 {
		rec := a.must(http.StatusUnauthorized, "", "POST", "/auth/token", bad)
		if d := detail(t, rec); strings.Contains(d, "wrong\"") {
			t.Fatalf("detail echoes the password: %s", d)
		}
	}
	// Past two free failures, even the right password waits.
	rec := a.must(http.StatusTooManyRequests, "", "POST", "/auth/token", `{"user":"alice","password":"alicepw"}`)
	if rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	a.now = a.now.Add(time.Second)
	a.login("alice", "alicepw")
	// An unknown user fails as a wrong password does.
	if d := detail(t, a.must(http.StatusUnauthorized, "", "POST", "/auth/token", `{"user":"nobody","password":"x"}`)); d != auth.ErrBadPassword.Error() {
		t.Fatalf("unknown user: %q", d)
	}
}

func TestAuthAdministration(t *testing.T) {
	a := newAuthAPI(t)
	alice := a.setup()
	// Only root administers; alice may read herself and change her password.
	a.must(http.StatusForbidden, alice, "GET", "/auth/users", "")
	a.must(http.StatusForbidden, alice, "GET", "/auth/users/root", "")
	a.must(http.StatusForbidden, alice, "PUT", "/auth/users/alice", `{"roles":["root"]}`)
	a.must(http.StatusForbidden, alice, "PUT", "/auth/roles/app", `{"permissions":[{"prefix":"","access":"readwrite"}]}`)
	a.must(http.StatusForbidden, alice, "GET", "/cluster/status", "")
	a.must(http.StatusForbidden, alice, "POST", "/compaction/run", "")
	a.must(http.StatusForbidden, alice, "GET", "/backup", "")
	a.must(http.StatusForbidden, alice, "POST", "/compact", `{"revision":1}`)
	// A watch needs read access to all it watches (one that is allowed
	// streams until its client leaves: see TestWatchStreamsChanges).
	a.must(http.StatusForbidden, alice, "GET", "/watch?prefix=other/", "")
	a.must(http.StatusForbidden, alice, "GET", "/watch?prefix=app", "")
	a.must(http.StatusForbidden, alice, "GET", "/watch?key=secret", "")
	rec := a.must(http.StatusOK, alice, "GET", "/auth/users/alice", "")
	var u userAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil || u.Name != "alice" || len(u.Roles) != 1 || !u.HasPassword {
		t.Fatalf("alice: %s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "$2") {
		t.Fatalf("the hash is shown: %s", rec.Body)
	}
	// Root's own limits.
	a.must(http.StatusBadRequest, a.root, "DELETE", "/auth/users/root", "")
	a.must(http.StatusBadRequest, a.root, "PUT", "/auth/users/root", `{"roles":["app"]}`)
	a.must(http.StatusBadRequest, a.root, "PUT", "/auth/roles/root", `{"permissions":[]}`)
	a.must(http.StatusBadRequest, a.root, "DELETE", "/auth/roles/root", "")
	a.must(http.StatusUnprocessableEntity, a.root, "PUT", "/auth/users/bob", `{"roles":["app"]}`)
	a.must(http.StatusUnprocessableEntity, a.root, "PUT", "/auth/users/bob", `{"password":"x","roles":["nope"]}`)
	a.must(http.StatusUnprocessableEntity, a.root, "PUT", "/auth/roles/r", `{"permissions":[{"prefix":"a","access":"write"}]}`)
	a.must(http.StatusUnprocessableEntity, a.root, "PUT", "/auth/users/bob", `{"password":"x","role":["app"]}`)
	a.must(http.StatusBadRequest, a.root, "GET", "/auth/users/a%2Fb", "")
	a.must(http.StatusNotFound, a.root, "DELETE", "/auth/users/bob", "")
	a.must(http.StatusNotFound, a.root, "GET", "/auth/roles/nope", "")
	a.must(http.StatusMethodNotAllowed, a.root, "POST", "/auth/users/bob", "")
	// Lists.
	rec = a.must(http.StatusOK, a.root, "GET", "/auth/roles", "")
	if !strings.Contains(rec.Body.String(), `"name":"root"`) || !strings.Contains(rec.Body.String(), `"prefix":"app/","access":"readwrite"`) {
		t.Fatalf("roles: %s", rec.Body)
	}
	rec = a.must(http.StatusOK, a.root, "GET", "/auth/users", "")
	if !strings.Contains(rec.Body.String(), `"name":"alice"`) || !strings.Contains(rec.Body.String(), `"name":"root"`) {
		t.Fatalf("users: %s", rec.Body)
	}
	// Root may use the cluster endpoints.
	a.must(http.StatusOK, a.root, "GET", "/cluster/status", "")
	a.must(http.StatusOK, a.root, "POST", "/compact", `{"revision":1}`)
}

// The auth state is no key: no key API sees it.
func TestAuthStateNotInKeys(t *testing.T) {
	a := newAuthAPI(t)
	a.setup()
	rec := a.must(http.StatusOK, a.root, "GET", "/keys", "")
	if !strings.Contains(rec.Body.String(), `"count":0`) {
		t.Fatalf("keys: %s", rec.Body)
	}
	a.must(http.StatusNotFound, a.root, "GET", "/key/alice", "")
}

// Two users who send the same request ids get each their own outcome.
func TestAuthRequestIDsPerUser(t *testing.T) {
	a := newAuthAPI(t)
	alice := a.setup()
	a.must(http.StatusOK, a.root, "PUT", "/auth/users/bob", `{"password":"bobpw","roles":["app"]}`)
	bob := a.login("bob", "bobpw")
	a.must(http.StatusOK, alice, "PUT", "/key/app/x?client_id=c&request_id=1", `{"value":"alice"}`)
	a.must(http.StatusOK, bob, "PUT", "/key/app/x?client_id=c&request_id=1", `{"value":"bob"}`)
	kv, _ := a.f.store.Get([]byte("app/x"))
	if string(kv.Value) != "bob" || kv.Version != 2 {
		t.Fatalf("app/x = %q version %d; bob's write was taken for alice's", kv.Value, kv.Version)
	}
	// Each finds its own request's outcome, and nobody else's.
	for user, tok := range map[string]string{"alice": alice, "bob": bob} {
		rec := a.must(http.StatusOK, tok, "GET", "/request_status?client_id=c&request_id=1", "")
		want := map[string]string{"alice": `"version":1`, "bob": `"version":2`}[user]
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s's request status: %s; want %s", user, rec.Body, want)
		}
	}
	a.must(http.StatusOK, a.root, "PUT", "/auth/users/carol", `{"password":"carolpw"}`)
	carol := a.login("carol", "carolpw")
	if rec := a.do(carol, "GET", "/request_status?client_id=c&request_id=1", ""); rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `"version"`) {
		t.Fatalf("carol sees another user's request: %s", rec.Body)
	}
}

func TestAuthOff(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	rec := serveString(h, "POST", "/auth/token", `{"user":"root","password":"x"}`)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("without auth: %d %s", rec.Code, rec.Body)
	}
	if _, err := New(Config{Auth: &AuthConfig{}}, noAuthBackend{newFake()}); err == nil {
		t.Fatal("auth on over a backend without auth state")
	}
}

// noAuthBackend hides the fake's AuthState.
type noAuthBackend struct{ Backend }

// BenchmarkGetAuth is BenchmarkGet with auth on, as user alice whose role
// covers the key: the cost of authenticating and authorizing a request.
func BenchmarkGetAuth(b *testing.B) {
	a := newAuthAPI(b)
	alice := a.setup()
	if rec := a.do(alice, "PUT", "/key/app/key6", `{"value": "myvalue"}`); rec.Code != 200 {
		b.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest("GET", "/key/app/key6", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
	}
}

// Route names the auth endpoints by template (a user's name never becomes
// a label), and an API with auth on serves exactly those.
func TestAuthRoutes(t *testing.T) {
	a := newAuthAPI(t)
	for _, tc := range []struct{ method, target, want string }{
		{"POST", "/auth/token", "/auth/token"},
		{"GET", "/auth/users", "/auth/users"},
		{"GET", "/auth/users/alice", "/auth/users/{name}"},
		{"GET", "/auth/roles", "/auth/roles"},
		{"DELETE", "/auth/roles/app", "/auth/roles/{name}"},
		{"GET", "/auth/users/", "other"},
		{"GET", "/auth/users/a/b", "other"},
		{"GET", "/auth/tokens", "other"},
		{"GET", "/auth/", "other"},
	} {
		req := httptest.NewRequest(tc.method, tc.target, nil)
		if got := Route(req); got != tc.want {
			t.Errorf("Route(%s %s) = %q, want %q", tc.method, tc.target, got, tc.want)
		}
		rec := a.do(a.root, tc.method, tc.target, "")
		notFound := rec.Code == 404 && rec.Body.String() == string(bodyNotFound)
		if notFound != (tc.want == "other") {
			t.Errorf("%s %s: route %q, answered %d %s", tc.method, tc.target, tc.want, rec.Code, rec.Body)
		}
	}
}

// A client certificate the server verified names its user by its common
// name (when the request has no Authorization header); one it did not
// verify names no one.
func TestAuthClientCertificate(t *testing.T) {
	a := newAuthAPI(t)
	a.setup()
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}}
	for _, c := range []struct {
		name string
		tls  *tls.ConnectionState
		want int
	}{
		{"verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}, http.StatusNotFound},
		{"not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, http.StatusUnauthorized},
		{"no certificate", &tls.ConnectionState{}, http.StatusUnauthorized},
	} {
		for _, key := range []string{"app/x", "other"} {
			req := httptest.NewRequest("GET", "/key/"+key, nil)
			req.TLS = c.tls
			rec := httptest.NewRecorder()
			a.h.ServeHTTP(rec, req)
			want := c.want
			if want == http.StatusNotFound && key == "other" {
				want = http.StatusForbidden // alice's role covers app/ only
			}
			if rec.Code != want {
				t.Errorf("%s, %s: %d %s; want %d", c.name, key, rec.Code, rec.Body, want)
			}
		}
	}
	// A certificate of a user that does not exist: 401.
	ghost := &x509.Certificate{Subject: pkix.Name{CommonName: "ghost"}}
	req := httptest.NewRequest("GET", "/key/app/x", nil)
	req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{ghost}}}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(detail(t, rec), "ghost") {
		t.Fatalf("unknown user's certificate: %d %s", rec.Code, rec.Body)
	}
}

// FuzzAuthRequest sends root's requests with any method, auth path and body,
// and the login with any body: the answer is JSON, an error has a detail,
// and the auth state changes only by a 200 PUT or DELETE.
func FuzzAuthRequest(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"PUT", "/auth/users/bob", `{"password":"x","roles":["app"]}`},
		{"PUT", "/auth/users/bob", `{"password":"","roles":null}`},
		{"PUT", "/auth/users/root", `{"roles":[]}`},
		{"DELETE", "/auth/users/alice", ``},
		{"PUT", "/auth/roles/r", `{"permissions":[{"prefix":"\u0000\uffff","access":"read"}]}`},
		{"PUT", "/auth/roles/r", `{"permissions":[{"prefix":"a","access":"readwrite","x":1}]}`},
		{"DELETE", "/auth/roles/app", ``},
		{"GET", "/auth/users/a%2", ``},
		{"POST", "/auth/token", `{"user":"alice","password":"alicepw"}`},
		{"POST", "/auth/token", `{"user":1}`},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	a := newAuthAPI(f)
	a.setup()
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !strings.HasPrefix(path, "/auth/") || strings.ContainsAny(path, " \t\r\n?#") || !validMethod(method) {
			return
		}
		req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
		req.Method = method
		req.URL.Path, req.URL.RawPath = path, ""
		if u, err := url.ParseRequestURI(path); err == nil {
			req.URL = u
		}
		req.Header.Set("Authorization", "Bearer "+a.root)
		before := a.f.store.Auth()
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		if !json.Valid(rec.Body.Bytes()) && method != "HEAD" {
			t.Fatalf("%s %s: body %q is not JSON", method, path, rec.Body)
		}
		if rec.Code != http.StatusOK && method != "HEAD" {
			detail(t, rec)
		}
		changed := a.f.store.Auth() != before
		if changed && (rec.Code != http.StatusOK || (method != "PUT" && method != "DELETE")) {
			t.Fatalf("%s %s %q: %d, and the auth state changed", method, path, body, rec.Code)
		}
		if changed {
			// Start the next input from the same users and roles.
			*a = *newAuthAPI(t)
			a.setup()
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "PUT", "DELETE", "POST", "PATCH":
		return true
	}
	return false
}
