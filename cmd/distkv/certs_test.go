package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// runCerts runs `distkv certs args...` and returns its output and error.
func runCerts(args ...string) (string, error) {
	cmd := newCertsCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func verifyFiles(t *testing.T, dir, certFile, keyFile string, usage x509.ExtKeyUsage, host string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not verify (usage %v, host %q): %v", certFile, usage, host, err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600", keyFile, st.Mode().Perm(), err)
	}
	return pair.Leaf
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := runCerts("node", "n1", "--hosts", "127.0.0.1", "--dir", dir); err == nil || !strings.Contains(err.Error(), "distkv certs ca --dir") {
		t.Errorf("node certificate without a CA: %v, want an error that says to make a CA", err)
	}
	if out, err := runCerts("ca", "--dir", dir); err != nil || !strings.Contains(out, "ca.key") {
		t.Fatalf("certs ca: %v %s", err, out)
	}
	if _, err := runCerts("ca", "--dir", dir); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second CA over the first: %v, want a refusal", err)
	}
	if _, err := runCerts("node", "n1", "--hosts", "n1.example,10.1.2.3", "--dir", dir, "--days", "30"); err != nil {
		t.Fatal(err)
	}
	n1 := verifyFiles(t, dir, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), x509.ExtKeyUsageServerAuth, "n1.example")
	verifyFiles(t, dir, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), x509.ExtKeyUsageServerAuth, "10.1.2.3")
	verifyFiles(t, dir, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), x509.ExtKeyUsageClientAuth, "")
	if d := n1.NotAfter.Sub(n1.NotBefore).Hours() / 24; d < 29.9 || d > 30.1 {
		t.Errorf("--days 30 made a certificate valid %.1f days", d)
	}
	if _, err := runCerts("client", "alice", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	alice := verifyFiles(t, dir, filepath.Join(dir, "client-alice.crt"), filepath.Join(dir, "client-alice.key"), x509.ExtKeyUsageClientAuth, "")
	if alice.Subject.CommonName != "alice" {
		t.Errorf("client certificate's common name %q, want alice", alice.Subject.CommonName)
	}
	for _, args := range [][]string{
		{"node", "../n1", "--hosts", "h", "--dir", dir},
		{"client", "a/b", "--dir", dir},
		{"client", "bob", "--days", "-1", "--dir", dir},
		{"node", "n2", "--hosts", " ", "--dir", dir},
	} {
		if _, err := runCerts(args...); err == nil {
			t.Errorf("certs %q succeeded", args)
		}
	}
}

func TestServerTLSFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"ca", "--dir", dir}, {"node", "n1", "--hosts", "127.0.0.1", "--dir", dir}} {
		if _, err := runCerts(args...); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, ca := filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), filepath.Join(dir, "ca.crt")
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		o    tlsOptions
		want string
	}{
		{tlsOptions{certFile: cert}, "--tls-cert-file and --tls-key-file go together"},
		{tlsOptions{clientCAFile: ca}, "--tls-client-ca-file needs --tls-cert-file"},
		{tlsOptions{peerCertFile: cert, peerKeyFile: key}, "--peer-tls-ca-file missing"},
		{tlsOptions{peerCAFile: ca}, "--peer-tls-cert-file and --peer-tls-key-file missing"},
		{tlsOptions{certFile: cert, keyFile: ca}, "HTTP API TLS"},
		{tlsOptions{peerCertFile: cert, peerKeyFile: key, peerCAFile: key}, "no PEM certificate"},
	} {
		if _, err := newServerTLS(tc.o, logger); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one saying %q", tc.o, err, tc.want)
		}
	}

	plain, err := newServerTLS(tlsOptions{}, logger)
	if err != nil || plain.apiServer != nil || plain.peerMutual != nil || plain.memberClient != nil {
		t.Fatalf("no flags: %+v, %v; want no TLS", plain, err)
	}
	if got := plain.memberURL("10.0.0.1:8000/"); got != "http://10.0.0.1:8000" {
		t.Errorf("--join host:port without TLS: %s", got)
	}
	peerOnly, err := newServerTLS(tlsOptions{peerCertFile: cert, peerKeyFile: key, peerCAFile: ca}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if got := peerOnly.memberURL("10.0.0.1:8000"); got != "http://10.0.0.1:8000" {
		t.Errorf("--join host:port with peer TLS only (plain API): %s", got)
	}
	if peerOnly.peerMutual.ClientAuth != tls.RequireAndVerifyClientCert || peerOnly.peerMutual.MinVersion != tls.VersionTLS13 {
		t.Errorf("peer TLS is not mutual TLS 1.3: %+v", peerOnly.peerMutual)
	}
	full, err := newServerTLS(tlsOptions{certFile: cert, keyFile: key, clientCAFile: ca, peerCertFile: cert, peerKeyFile: key, peerCAFile: ca}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if got := full.memberURL("10.0.0.1:8000"); got != "https://10.0.0.1:8000" {
		t.Errorf("--join host:port with API TLS: %s", got)
	}
	if got := full.memberURL("http://10.0.0.1:8000"); got != "http://10.0.0.1:8000" {
		t.Errorf("--join with an explicit scheme: %s", got)
	}
	if full.apiServer.ClientAuth != tls.RequireAndVerifyClientCert || full.apiServer.MinVersion != tls.VersionTLS13 ||
		!slices.Equal(full.apiServer.NextProtos, []string{"http/1.1"}) {
		t.Errorf("API TLS configuration: %+v", full.apiServer)
	}
	// The reloaders and the SIGHUP watcher stop with the server. (os/signal keeps
	// a watcher of its own from the first Notify on: it is not counted.)
	stop := full.start(logger)
	for deadline := time.Now().Add(5 * time.Second); tlsGoroutines() != 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("start runs %d goroutines, want the two reloaders and the SIGHUP watcher", tlsGoroutines())
			break
		}
	}
	stop()
	if n := tlsGoroutines(); n != 0 {
		t.Errorf("%d goroutines of the TLS reloaders left after stop", n)
	}
}

// tlsGoroutines counts the goroutines that serverTLS.start runs.
func tlsGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*serverTLS).start") {
			n++
		}
	}
	return n
}

// TestDevSecurity: --secure makes a CA once and certificates for every node
// and the dev user, and gives each node flags that name existing files.
func TestDevSecurity(t *testing.T) {
	dataDir := t.TempDir()
	off := newDevSecurity(false, dataDir)
	if err := off.prepare(3, []string{"127.0.0.1"}); err != nil || off.serverArgs("n1") != nil || off.howToReach("x:1") != nil || off.scheme() != "http" {
		t.Fatalf("without --secure: %v %q", err, off.serverArgs("n1"))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "certs")); err == nil {
		t.Error("certificates made without --secure")
	}
	sec := newDevSecurity(true, dataDir)
	if err := sec.prepare(3, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	caBefore, err := os.ReadFile(filepath.Join(sec.certDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.prepare(3, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	caAfter, _ := os.ReadFile(filepath.Join(sec.certDir, "ca.crt"))
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("a second start made a new CA")
	}
	args := sec.serverArgs("n2")
	for i := 1; i < len(args); i++ {
		if !strings.HasSuffix(args[i-1], "-file") {
			continue
		}
		if _, err := os.Stat(args[i]); err != nil {
			t.Errorf("%s names %s: %v", args[i-1], args[i], err)
		}
	}
	if !slices.Contains(args, "--auth") {
		t.Errorf("dev --secure runs nodes without --auth: %v", args)
	}
	if info, err := os.Stat(sec.passwordFile); err != nil || info.Mode().Perm() != 0o600 || info.Size() < 20 {
		t.Errorf("root password file %s: %v %v, want 0600 and a long password", sec.passwordFile, info, err)
	}
	verifyFiles(t, sec.certDir, filepath.Join(sec.certDir, "n2.crt"), filepath.Join(sec.certDir, "n2.key"), x509.ExtKeyUsageServerAuth, "localhost")
	c, k := clientCertFiles(sec.certDir, devUser)
	verifyFiles(t, sec.certDir, c, k, x509.ExtKeyUsageClientAuth, "")
	hint := strings.Join(sec.howToReach("127.0.0.1:8000"), "\n")
	if !strings.Contains(hint, "https://127.0.0.1:8000") || !strings.Contains(hint, "--cert "+c) {
		t.Errorf("how to reach the cluster:\n%s", hint)
	}
}
