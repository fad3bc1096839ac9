package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/certs"
)

// TestTLS: with Config.TLS a client reaches a node that requires client
// certificates at a host:port endpoint (https by default); without its
// certificate, or trusting another CA, it is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.Pair.WriteFiles(caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	node, err := ca.Node("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ca.Client("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "alice.crt"), filepath.Join(dir, "alice.key")
	if err := alice.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other.crt")
	if err := other.Pair.WriteFiles(otherFile, filepath.Join(dir, "other.key")); err != nil {
		t.Fatal(err)
	}

	pair, err := tls.X509KeyPair(node.CertPEM, node.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	var user atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		reply(w, 200, `{"key":"k","value":"v","version":1,"revision":1}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")

	get := func(caFile, certFile, keyFile string) error {
		cfg, err := LoadTLS(caFile, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{Endpoints: []string{addr}, TLS: cfg, RetryFor: -1, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Endpoints(); len(got) != 1 || got[0] != "https://"+addr {
			t.Errorf("endpoints %q, want https://%s", got, addr)
		}
		_, err = c.Get(context.Background(), "k")
		return err
	}
	if err := get(caFile, certFile, keyFile); err != nil {
		t.Fatalf("client with a certificate of the node's CA: %v", err)
	}
	if got := user.Load(); got != "alice" {
		t.Errorf("the node saw user %v, want alice", got)
	}
	if err := get(caFile, "", ""); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := get(otherFile, certFile, keyFile); err == nil {
		t.Error("a client that trusts another CA accepted the node's certificate")
	}

	if _, err := New(Config{Endpoints: []string{addr}, TLS: &tls.Config{}, HTTPClient: &http.Client{}}); err == nil {
		t.Error("a client with both TLS and HTTPClient was made")
	}
	for _, tc := range []struct{ ca, cert, key, want string }{
		{filepath.Join(dir, "missing.crt"), "", "", "no such file"},
		{keyFile, "", "", "holds no PEM certificate"},
		{caFile, certFile, "", "both its certificate file and its key file"},
		{caFile, certFile, filepath.Join(dir, "ca.key"), "private key does not match"},
	} {
		if _, err := LoadTLS(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadTLS(%q, %q, %q) = %v, want an error saying %q", tc.ca, tc.cert, tc.key, err, tc.want)
		}
	}
}
