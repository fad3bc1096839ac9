// Package certs makes the certificates a distkv cluster needs for TLS, for
// people who have no public key infrastructure of their own: a certificate
// authority, node certificates and client certificates, with crypto/x509 and
// nothing outside the standard library.
//
// Every key is ECDSA P-256. A node certificate names the node's hosts and IP
// addresses and is valid both as a server and as a client certificate, so
// that the one file serves the HTTP API, accepts peer connections and dials
// peers (peer TLS is always mutual). A client certificate's common name is
// the user it stands for. Certificates and keys are PEM files; key files are
// written with mode 0600 and never replaced in place by a partial file.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of the validity periods.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// backdate is how far before now a certificate's validity starts, so that a
// machine whose clock is a little behind accepts it at once.
const backdate = 5 * time.Minute

// Pair is a certificate and its private key, PEM-encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// CA is a certificate authority that can sign node and client certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Pair is Cert and Key as PEM, as read or made.
	Pair Pair
}

// NewCA makes a self-signed certificate authority named name (the common
// name), valid for validity (DefaultCAValidity if 0).
func NewCA(name string, validity time.Duration) (*CA, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("certs: a CA needs a name")
	}
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("certs: validity %v is negative", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"distkv"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, Pair: Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}}, nil
}

// LoadCA reads a CA's certificate and key from PEM files, as WriteFiles left
// them. It refuses a certificate that is not a CA and a key that does not
// belong to it.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// ParseCA is LoadCA on the files' contents.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("certs: CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: certificate %q is not a CA", cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return nil, errors.New("certs: CA key: no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(kb.Bytes); err2 == nil {
			k, err = ek, nil
		} else {
			return nil, fmt.Errorf("certs: CA key: %w", err)
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("certs: CA key cannot sign")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: the CA key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: signer, Pair: Pair{CertPEM: certPEM, KeyPEM: keyPEM}}, nil
}

// Node makes a certificate for a node called name, reachable at hosts (DNS
// names and IP addresses, at least one), valid for validity
// (DefaultCertValidity if 0). It is valid for server and client
// authentication, so that it serves the API and both ends of peer links.
func (ca *CA) Node(name string, hosts []string, validity time.Duration) (Pair, error) {
	if strings.TrimSpace(name) == "" {
		return Pair{}, errors.New("certs: a node certificate needs a name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"distkv"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
		return Pair{}, fmt.Errorf("certs: node %s: give at least one host name or IP address its peers and clients reach it at", name)
	}
	return ca.sign(tmpl, validity)
}

// Client makes a certificate for user (its common name) that authenticates
// a client to the HTTP API, valid for validity (DefaultCertValidity if 0).
func (ca *CA) Client(user string, validity time.Duration) (Pair, error) {
	if strings.TrimSpace(user) == "" {
		return Pair{}, errors.New("certs: a client certificate needs a user name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.sign(tmpl, validity)
}

// sign completes tmpl (serial, validity, key usage), makes it a key and
// signs it with ca.
func (ca *CA) sign(tmpl *x509.Certificate, validity time.Duration) (Pair, error) {
	if validity == 0 {
		validity = DefaultCertValidity
	}
	if validity < 0 {
		return Pair{}, fmt.Errorf("certs: validity %v is negative", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		// A certificate cannot outlive its CA's.
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// WriteFiles writes p to certFile (mode 0644) and keyFile (mode 0600), each
// through a temporary file renamed into place, so that a reader never sees
// half a file and a key is never readable by others, even for a moment.
func (p Pair) WriteFiles(certFile, keyFile string) error {
	if err := writeFile(keyFile, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, p.CertPEM, 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; chmod also covers a 0644 certificate.
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
