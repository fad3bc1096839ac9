package tlsconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkv/distkv/internal/certs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// files is a CA and a node certificate written into a directory.
type files struct {
	ca              *certs.CA
	dir             string
	caFile          string
	certFile, key   string
	clientFile, cky string
}

func newFiles(t *testing.T) *files {
	t.Helper()
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &files{ca: ca, dir: dir, caFile: filepath.Join(dir, "ca.crt"),
		certFile: filepath.Join(dir, "n1.crt"), key: filepath.Join(dir, "n1.key"),
		clientFile: filepath.Join(dir, "alice.crt"), cky: filepath.Join(dir, "alice.key")}
	if err := os.WriteFile(f.caFile, ca.Pair.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	f.rotate(t)
	p, err := ca.Client("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFiles(f.clientFile, f.cky); err != nil {
		t.Fatal(err)
	}
	return f
}

// rotate writes a new node certificate and key, and returns the new
// certificate's serial.
func (f *files) rotate(t *testing.T) string {
	t.Helper()
	p, err := f.ca.Node("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFiles(f.certFile, f.key); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return serialString(pair.Leaf.SerialNumber)
}

// serve accepts TLS connections with cfg on a loopback port and answers
// each with one line; it returns the address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "hello\n")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// dial connects with cfg, reads the server's line and returns the serial of
// the server's certificate, or the error that stopped it.
func dial(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// With TLS 1.3 the server judges the client's certificate after the
	// client considers the handshake done: a refusal shows on the read.
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil {
		return "", err
	}
	return serialString(c.ConnectionState().PeerCertificates[0].SerialNumber), nil
}

func clientWith(t *testing.T, f *files, certFile, keyFile string) *tls.Config {
	t.Helper()
	pool, err := LoadPool(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// TestServerRefusesClients: a server that requires client certificates
// serves a client with one from its CA, and refuses one without a
// certificate, one with a certificate of another CA, and one that speaks
// TLS 1.2 at most.
func TestServerRefusesClients(t *testing.T) {
	f := newFiles(t)
	r, err := New(Config{CertFile: f.certFile, KeyFile: f.key, CAFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := r.ServerConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)
	if _, err := dial(addr, clientWith(t, f, f.clientFile, f.cky)); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}

	other := newFiles(t)
	tls12 := clientWith(t, f, f.clientFile, f.cky)
	tls12.MaxVersion = tls.VersionTLS12
	foreign := clientWith(t, f, other.clientFile, other.cky)
	for name, cfg := range map[string]*tls.Config{
		"no certificate":               clientWith(t, f, "", ""),
		"certificate of another CA":    foreign,
		"TLS 1.2 only":                 tls12,
		"server not trusted by client": clientWith(t, other, f.clientFile, f.cky),
	} {
		if _, err := dial(addr, cfg); err == nil {
			t.Errorf("%s: connection served", name)
		}
	}
}

// TestReloadOnFileChange replaces the certificate files of a serving
// server: handshakes made after the next check present the new certificate.
// A SIGHUP-style Reload does it at once.
func TestReloadOnFileChange(t *testing.T) {
	f := newFiles(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	r, err := New(Config{CertFile: f.certFile, KeyFile: f.key, CAFile: f.caFile, Interval: 100 * time.Millisecond, Name: "api", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	scfg, err := r.ServerConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)
	ccfg := clientWith(t, f, f.clientFile, f.cky)
	first, err := dial(addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	want := f.rotate(t)
	if want == first {
		t.Fatal("rotation made the same serial")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := dial(addr, ccfg)
		if err != nil {
			t.Fatalf("handshake during rotation: %v", err)
		}
		if got == want {
			break
		}
		if got != first {
			t.Fatalf("server presents serial %s, neither the old %s nor the new %s", got, first, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still presents the old certificate %s 5s after its files were replaced", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if !strings.Contains(logs.String(), "TLS certificate reloaded") || !strings.Contains(logs.String(), want) {
		t.Errorf("no log line of the reload naming serial %s:\n%s", want, logs.String())
	}
	mu.Unlock()

	// Reload (SIGHUP) does not wait for the next check.
	slow, err := New(Config{CertFile: f.certFile, KeyFile: f.key, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want = f.rotate(t)
	if err := slow.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serialString(slow.Certificate().Leaf.SerialNumber); got != want {
		t.Errorf("after Reload the certificate is %s, want %s", got, want)
	}
}

// TestReloadKeepsCertificateOnBadFiles: a key that does not go with the
// certificate (as while the two files are replaced one after the other), or
// a missing file, leaves the certificate in use, and the next good pair is
// taken.
func TestReloadKeepsCertificateOnBadFiles(t *testing.T) {
	f := newFiles(t)
	r, err := New(Config{CertFile: f.certFile, KeyFile: f.key})
	if err != nil {
		t.Fatal(err)
	}
	before := serialString(r.Certificate().Leaf.SerialNumber)
	keep, err := os.ReadFile(f.key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.ca.Node("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.certFile, p.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Errorf("reload with a key of another certificate: err = %v", err)
	}
	if got := serialString(r.Certificate().Leaf.SerialNumber); got != before {
		t.Errorf("certificate in use changed to %s after a failed reload", got)
	}
	os.Remove(f.key)
	if err := r.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reload without a key file: err = %v", err)
	}
	if err := os.WriteFile(f.key, keep, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, p.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serialString(r.Certificate().Leaf.SerialNumber); got == before {
		t.Error("the good pair written after failures was not taken")
	}
}

// TestMutualConfig: two ends with MutualConfig of the same CA talk; an end
// whose certificate another CA signed is refused, whichever side it is on.
func TestMutualConfig(t *testing.T) {
	f, other := newFiles(t), newFiles(t)
	mutual := func(f *files) *tls.Config {
		r, err := New(Config{CertFile: f.certFile, KeyFile: f.key, CAFile: f.caFile})
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.MutualConfig()
		if err != nil {
			t.Fatal(err)
		}
		c.ServerName = "127.0.0.1"
		return c
	}
	addr := serve(t, mutual(f))
	if _, err := dial(addr, mutual(f)); err != nil {
		t.Fatalf("peers of one CA: %v", err)
	}
	if _, err := dial(addr, mutual(other)); err == nil {
		t.Error("a peer of another CA was served")
	}
	addr2 := serve(t, mutual(other))
	if _, err := dial(addr2, mutual(f)); err == nil {
		t.Error("a peer dialed a node of another CA")
	}
}

// TestExpiredCertificate: New refuses a certificate past its validity, and
// a reload to one keeps the certificate in use.
func TestExpiredCertificate(t *testing.T) {
	f := newFiles(t)
	r, err := New(Config{CertFile: f.certFile, KeyFile: f.key})
	if err != nil {
		t.Fatal(err)
	}
	before := serialString(r.Certificate().Leaf.SerialNumber)
	p, err := f.ca.Node("n1", []string{"127.0.0.1"}, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if err := p.WriteFiles(f.certFile, f.key); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("reload to an expired certificate: err = %v", err)
	}
	if got := serialString(r.Certificate().Leaf.SerialNumber); got != before {
		t.Errorf("an expired certificate replaced the one in use")
	}
	if _, err := New(Config{CertFile: f.certFile, KeyFile: f.key}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("New with an expired certificate: err = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	f := newFiles(t)
	if _, err := New(Config{CertFile: f.certFile}); err == nil {
		t.Error("a Reloader without a key file was made")
	}
	if _, err := New(Config{CertFile: f.certFile, KeyFile: f.cky}); err == nil {
		t.Error("a Reloader with a key of another certificate was made")
	}
	if _, err := New(Config{CertFile: f.certFile, KeyFile: f.key, CAFile: f.key}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CA file without a certificate: err = %v", err)
	}
	r, err := New(Config{CertFile: f.certFile, KeyFile: f.key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ServerConfig(true); err == nil {
		t.Error("a server asking for client certificates without a CA to check them")
	}
	c, err := r.ServerConfig(false)
	if err != nil || c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.NoClientCert {
		t.Errorf("ServerConfig(false) = %+v, %v", c, err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
