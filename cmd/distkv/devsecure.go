package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/distkv/distkv/internal/certs"
)

// devSecurity is what `distkv dev --secure` adds to a local cluster. Every
// server flag and every hint on how to reach the cluster that security
// brings comes from here.
type devSecurity struct {
	// tls: the API and the peer links use TLS, with client certificates
	// required, from certificates made under certDir.
	tls     bool
	certDir string
	// auth: every request needs a user (--auth); root's password is made
	// at random once and kept in passwordFile. The client certificate made
	// for devUser authenticates as that user.
	auth         bool
	passwordFile string
}

// devUser is the user of the client certificate that `distkv dev --secure`
// makes.
const devUser = "root"

// newDevSecurity returns the security of a dev cluster in dataDir; secure
// turns everything on.
func newDevSecurity(secure bool, dataDir string) devSecurity {
	return devSecurity{tls: secure, certDir: filepath.Join(dataDir, "certs"),
		auth: secure, passwordFile: filepath.Join(dataDir, "certs", "root-password")}
}

// prepare makes what the nodes need before they start: with TLS, a CA
// (kept across runs, as the nodes' data is), a certificate for each node
// valid for hosts, and a client certificate for devUser.
func (s devSecurity) prepare(nodes int, hosts []string) error {
	if !s.tls {
		return nil
	}
	if err := os.MkdirAll(s.certDir, 0o700); err != nil {
		return err
	}
	if s.auth {
		if err := ensurePasswordFile(s.passwordFile); err != nil {
			return fmt.Errorf("dev root password: %w", err)
		}
	}
	caCert, caKey := filepath.Join(s.certDir, caCertName), filepath.Join(s.certDir, caKeyName)
	ca, err := certs.LoadCA(caCert, caKey)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = certs.NewCA("distkv dev CA", 0); err == nil {
			err = ca.Pair.WriteFiles(caCert, caKey)
		}
	}
	if err != nil {
		return fmt.Errorf("dev certificates: %w", err)
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		p, err := ca.Node(name, hosts, 0)
		if err != nil {
			return fmt.Errorf("dev certificates: %w", err)
		}
		c, k := nodeCertFiles(s.certDir, name)
		if err := p.WriteFiles(c, k); err != nil {
			return fmt.Errorf("dev certificates: %w", err)
		}
	}
	p, err := ca.Client(devUser, 0)
	if err != nil {
		return fmt.Errorf("dev certificates: %w", err)
	}
	c, k := clientCertFiles(s.certDir, devUser)
	if err := p.WriteFiles(c, k); err != nil {
		return fmt.Errorf("dev certificates: %w", err)
	}
	return nil
}

// serverArgs returns the flags that node name gets.
func (s devSecurity) serverArgs(name string) []string {
	if !s.tls {
		return nil
	}
	cert, key := nodeCertFiles(s.certDir, name)
	ca := filepath.Join(s.certDir, caCertName)
	args := []string{
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-file", ca,
		"--peer-tls-cert-file", cert, "--peer-tls-key-file", key, "--peer-tls-ca-file", ca,
	}
	if s.auth {
		args = append(args, "--auth", "--initial-root-password-file", s.passwordFile)
	}
	return args
}

// ensurePasswordFile writes a random password to path (0600) unless the
// file exists: a cluster made by an earlier run keeps its root password.
func ensurePasswordFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(base64.RawURLEncoding.EncodeToString(b[:])+"\n"), 0o600)
}

// scheme is the scheme of the nodes' HTTP URLs.
func (s devSecurity) scheme() string {
	if s.tls {
		return "https"
	}
	return "http"
}

// howToReach returns lines that show how to talk to the node at httpAddr,
// or nothing if plain HTTP needs no explaining.
func (s devSecurity) howToReach(httpAddr string) []string {
	if !s.tls {
		return nil
	}
	ca := filepath.Join(s.certDir, caCertName)
	cert, key := clientCertFiles(s.certDir, devUser)
	tlsCurl := fmt.Sprintf("--cacert %s --cert %s --key %s", ca, cert, key)
	lines := []string{
		"TLS everywhere: the API and the peer links, client certificates required (certificates in " + s.certDir + ")",
	}
	if s.auth {
		lines = append(lines, fmt.Sprintf("authentication on: the client certificate is user %s; its password is in %s (POST /auth/token, or --user %s --password ...)",
			devUser, s.passwordFile, devUser))
	}
	return append(lines,
		fmt.Sprintf("  curl %s -X PUT -d '{\"value\":\"world\"}' https://%s/key/hello", tlsCurl, httpAddr),
		fmt.Sprintf("  distkv get hello --endpoints %s %s", httpAddr, tlsCurl),
	)
}
