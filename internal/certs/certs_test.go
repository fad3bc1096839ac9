package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, p Pair) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	pair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatalf("the key does not go with the certificate: %v", err)
	}
	return pair.Leaf, pair
}

func verify(cert *x509.Certificate, ca *CA, usage x509.ExtKeyUsage, host string) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func TestNodeCertificate(t *testing.T) {
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Node("n1", []string{"n1.example", "127.0.0.1", "::1", " "}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := parse(t, p)
	if cert.Subject.CommonName != "n1" {
		t.Errorf("common name %q, want n1", cert.Subject.CommonName)
	}
	for _, tc := range []struct {
		usage x509.ExtKeyUsage
		host  string
	}{
		{x509.ExtKeyUsageServerAuth, "n1.example"},
		{x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{x509.ExtKeyUsageServerAuth, "::1"},
		{x509.ExtKeyUsageClientAuth, ""},
	} {
		if err := verify(cert, ca, tc.usage, tc.host); err != nil {
			t.Errorf("usage %v host %q: %v", tc.usage, tc.host, err)
		}
	}
	if err := verify(cert, ca, x509.ExtKeyUsageServerAuth, "n2.example"); err == nil {
		t.Error("the certificate verified for a host it does not name")
	}
	if err := verify(cert, other, x509.ExtKeyUsageServerAuth, "n1.example"); err == nil {
		t.Error("the certificate verified against another CA")
	}
	if cert.NotAfter.After(time.Now().Add(time.Hour + time.Minute)) {
		t.Errorf("valid until %v, asked for an hour", cert.NotAfter)
	}
	if _, err := ca.Node("n1", nil, 0); err == nil {
		t.Error("a node certificate without hosts was made")
	}
}

func TestClientCertificate(t *testing.T) {
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Client("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := parse(t, p)
	if cert.Subject.CommonName != "alice" {
		t.Errorf("common name %q, want alice", cert.Subject.CommonName)
	}
	if err := verify(cert, ca, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Errorf("client certificate does not verify as a client: %v", err)
	}
	if err := verify(cert, ca, x509.ExtKeyUsageServerAuth, ""); err == nil {
		t.Error("a client certificate verified as a server's")
	}
	if _, err := ca.Client("", 0); err == nil {
		t.Error("a client certificate without a user was made")
	}
}

// TestWriteAndLoad writes a CA and a node certificate, checks the modes of
// the files and that the CA read back signs certificates its original
// verifies.
func TestWriteAndLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.Pair.WriteFiles(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	// Rewriting keeps the modes (the rename replaces the file).
	if err := ca.Pair.WriteFiles(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{caCert: 0o644, caKey: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d files, want 2 (a temporary file left?)", len(entries))
	}
	loaded, err := LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loaded.Client("bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := parse(t, p)
	if err := verify(cert, ca, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Errorf("certificate of the loaded CA does not verify against the original: %v", err)
	}
}

func TestLoadCARefuses(t *testing.T) {
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.Node("n1", []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"key of another CA", ca.Pair.CertPEM, other.Pair.KeyPEM, "does not belong"},
		{"not a CA", node.CertPEM, node.KeyPEM, "not a CA"},
		{"no certificate", []byte("hello"), ca.Pair.KeyPEM, "no PEM CERTIFICATE"},
		{"no key", ca.Pair.CertPEM, nil, "no PEM PRIVATE KEY"},
		{"key block of garbage", ca.Pair.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}), "CA key"},
	} {
		_, err := ParseCA(tc.cert, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestCertificateDoesNotOutliveCA(t *testing.T) {
	ca, err := NewCA("short CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Client("carol", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := parse(t, p)
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("certificate valid until %v, its CA only until %v", cert.NotAfter, ca.Cert.NotAfter)
	}
}

// FuzzParseCA feeds ParseCA arbitrary files: it must return an error or a
// CA whose key signs certificates, never panic.
func FuzzParseCA(f *testing.F) {
	ca, err := NewCA("fuzz CA", 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.Pair.CertPEM, ca.Pair.KeyPEM)
	f.Add(ca.Pair.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ca.Pair.KeyPEM)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		got, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return
		}
		if _, err := got.Client("fuzz", time.Hour); err != nil {
			t.Fatalf("a CA that parsed cannot sign: %v", err)
		}
	})
}
