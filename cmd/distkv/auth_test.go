package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Every client command sends the credentials of --token, of --user and
// --password (logging in first), or of $DISTKV_TOKEN, in that order of
// precedence; the user and role commands send the right requests.
func TestClientCredentials(t *testing.T) {
	var mu sync.Mutex
	var seen []string // method, path, Authorization, body of each request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" ["+r.Header.Get("Authorization")+"] "+string(body))
		mu.Unlock()
		switch {
		case r.URL.Path == "/auth/token":
			if !strings.Contains(string(body), `"password":"pw"`) {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"detail":"wrong user name or password"}`)
				return
			}
			io.WriteString(w, `{"token":"from-login","expires_at":"2030-01-01T00:00:00Z"}`)
		case r.URL.Path == "/auth/roles/app" && r.Method == "GET":
			io.WriteString(w, `{"name":"app","permissions":[{"prefix":"a/","access":"read"}]}`)
		case strings.HasPrefix(r.URL.Path, "/auth/"):
			io.WriteString(w, `{"name":"x"}`)
		default:
			io.WriteString(w, `{"key":"k","value":"v","version":1,"revision":1}`)
		}
	}))
	defer srv.Close()
	ep := strings.TrimPrefix(srv.URL, "http://")
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}
	cases := []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"get", "k"}, "GET /key/k [] "},
		{"from-env", []string{"get", "k"}, "GET /key/k [Bearer from-env] "},
		{"from-env", []string{"get", "k", "--token", "from-flag"}, "GET /key/k [Bearer from-flag] "},
		{"from-env", []string{"get", "k", "--user", "u", "--password", "pw"}, "GET /key/k [Bearer from-login] "},
		{"", []string{"user", "add", "alice", "--roles", "app", "--new-password", "s3", "--token", "t"}, `PUT /auth/users/alice [Bearer t] {"password":"s3","roles":["app"]}`},
		{"", []string{"user", "passwd", "alice", "--new-password", "s4", "--token", "t"}, `PUT /auth/users/alice [Bearer t] {"password":"s4"}`},
		{"", []string{"user", "set-roles", "alice", "--token", "t"}, `PUT /auth/users/alice [Bearer t] {"roles":[]}`},
		{"", []string{"user", "delete", "alice", "--token", "t"}, `DELETE /auth/users/alice [Bearer t] `},
		{"", []string{"role", "grant", "app", "b/", "readwrite", "--token", "t"}, `PUT /auth/roles/app [Bearer t] {"permissions":[{"prefix":"a/","access":"read"},{"prefix":"b/","access":"readwrite"}]}`},
		{"", []string{"role", "grant", "app", "a/", "readwrite", "--token", "t"}, `PUT /auth/roles/app [Bearer t] {"permissions":[{"prefix":"a/","access":"readwrite"}]}`},
		{"", []string{"role", "revoke", "app", "a/", "--token", "t"}, `PUT /auth/roles/app [Bearer t] {"permissions":[]}`},
		{"", []string{"role", "list", "--token", "t"}, `GET /auth/roles [Bearer t] `},
	}
	for _, c := range cases {
		t.Setenv("DISTKV_TOKEN", c.env)
		args := append(c.args, "--endpoints", ep, "--retry-for", "0")
		if _, err := runClient(t, args...); err != nil {
			t.Fatalf("distkv %s: %v", strings.Join(c.args, " "), err)
		}
		if got := last(); got != c.want {
			t.Errorf("distkv %s sent %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	if _, err := runClient(t, "get", "k", "--user", "u", "--password", "bad", "--endpoints", ep, "--retry-for", "0"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if _, err := runClient(t, "get", "k", "--user", "u", "--endpoints", ep); err == nil || !strings.Contains(err.Error(), "--password") {
		t.Fatalf("--user without --password: %v", err)
	}
	if _, err := runClient(t, "role", "grant", "app", "a/", "write", "--endpoints", ep); err == nil {
		t.Fatal("grant of an unknown access")
	}
}
