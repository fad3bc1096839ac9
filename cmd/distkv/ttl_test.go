package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// distkv put --ttl sends the whole seconds as the body's "ttl", and refuses
// a TTL that is not a positive whole number of seconds before sending
// anything.
func TestPutTTLFlag(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		io.WriteString(w, `{"status":"ok","id":3,"key":"k","version":1}`)
	}))
	defer srv.Close()
	if _, err := runClient(t, "put", "k", "v", "--ttl", "5m", "--endpoints", srv.URL); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"0s", "1500ms", "-3s"} {
		if _, err := runClient(t, "put", "k", "v", "--ttl", bad, "--endpoints", srv.URL); err == nil || !strings.Contains(err.Error(), "whole number of seconds") {
			t.Errorf("--ttl %s: %v, want it refused", bad, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || bodies[0] != `{"value":"v","ttl":300}` {
		t.Fatalf("bodies sent %q, want one with \"ttl\":300", bodies)
	}
}
