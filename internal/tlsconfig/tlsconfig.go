// Package tlsconfig builds the TLS configurations of a distkv node from PEM
// files, and keeps its certificate current: a Reloader re-reads the
// certificate and key files when they change (checked about once a second)
// or when told to (SIGHUP), so a certificate is rotated by replacing its
// files, without a restart. Connections that are established keep the
// certificate they were made with; every handshake after the reload uses the
// new one.
//
// A reload that fails (a file missing, half written, a key that does not go
// with the certificate, as happens for a moment when the two files are
// replaced one after the other, or a certificate outside its validity
// period) keeps the certificate in use, logs why, and is tried again at the
// next check. New refuses such files outright.
//
// The CA file is read once, when the Reloader is made: a certificate
// authority is trusted from the start to the end of the process. To move to
// a new CA without downtime, put both CAs in the CA file, restart each node,
// then replace the certificates.
//
// Every configuration asks for TLS 1.3 at least.
package tlsconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// MinVersion is the oldest TLS version a distkv node or client speaks.
const MinVersion = tls.VersionTLS13

// DefaultInterval is how often a Reloader checks its files.
const DefaultInterval = time.Second

// Config names the files of a Reloader.
type Config struct {
	// CertFile and KeyFile are the PEM certificate (possibly followed by
	// intermediates) and its private key. Required.
	CertFile, KeyFile string
	// CAFile is a PEM file of the certificate authorities that the other
	// side's certificate must chain to. Optional for a server that does not
	// ask clients for certificates; required for Mutual.
	CAFile string
	// Interval is how often the files are checked for changes. Default
	// DefaultInterval; it may not be below 100ms.
	Interval time.Duration
	// Name names these files in log lines (for example "api" or "peer").
	Name string
	// Logger receives reloads and failed reloads; default discards.
	Logger *slog.Logger
}

// Validate fills in defaults and reports the first invalid setting.
func (c *Config) Validate() error {
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("tlsconfig: a certificate file and a key file are both required")
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Interval < 100*time.Millisecond {
		return fmt.Errorf("tlsconfig: check interval %v is below 100ms", c.Interval)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Reloader holds the certificate of CertFile and KeyFile and replaces it
// when the files change. Its methods are safe for concurrent use.
type Reloader struct {
	cfg  Config
	pool *x509.CertPool // nil without CAFile

	cert atomic.Pointer[tls.Certificate]

	mu sync.Mutex // serializes reloads
	// loaded are the certificate and key bytes of cert; lastErr is the
	// error of the last reload if it failed (the same error is logged once).
	loadedCert, loadedKey []byte
	lastErr               string
}

// New reads the files of cfg. It fails if they cannot be read, do not
// parse, the key does not go with the certificate, or the certificate has
// expired or is not valid yet.
func New(cfg Config) (*Reloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reloader{cfg: cfg}
	if cfg.CAFile != "" {
		pool, err := LoadPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		r.pool = pool
	}
	certPEM, keyPEM, err := r.readFiles()
	if err != nil {
		return nil, err
	}
	if _, err := r.load(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadPool reads the PEM certificates of files into a pool. A file without
// any certificate is an error.
func LoadPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tlsconfig: CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

func (r *Reloader) readFiles() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.cfg.CertFile); err != nil {
		return nil, nil, fmt.Errorf("tlsconfig: read certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.cfg.KeyFile); err != nil {
		return nil, nil, fmt.Errorf("tlsconfig: read key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// load parses a certificate and key and, if they are good, makes them the
// ones in use. It reports whether they differ from those in use.
func (r *Reloader) load(certPEM, keyPEM []byte) (bool, error) {
	if bytes.Equal(certPEM, r.loadedCert) && bytes.Equal(keyPEM, r.loadedKey) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("tlsconfig: %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, fmt.Errorf("tlsconfig: %s: %w", r.cfg.CertFile, err)
		}
	}
	// Every handshake with such a certificate would fail: the one in use
	// may still be good.
	if now := time.Now(); now.After(pair.Leaf.NotAfter) {
		return false, fmt.Errorf("tlsconfig: %s expired at %s", r.cfg.CertFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(pair.Leaf.NotBefore) {
		return false, fmt.Errorf("tlsconfig: %s is not valid before %s (is this machine's clock right?)", r.cfg.CertFile, pair.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	r.cert.Store(&pair)
	r.loadedCert, r.loadedKey = certPEM, keyPEM
	return true, nil
}

// Reload re-reads the files now. If they changed and are good, the new
// certificate is used from the next handshake on; if they cannot be used,
// the one in use stays and the error says why.
func (r *Reloader) Reload() error {
	_, err := r.reload(true)
	return err
}

// reload is Reload; with always, an error is logged even if these same
// bytes failed before.
func (r *Reloader) reload(always bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, keyPEM, err := r.readFiles()
	if err == nil {
		var changed bool
		changed, err = r.load(certPEM, keyPEM)
		if err == nil {
			if changed {
				leaf := r.cert.Load().Leaf
				r.cfg.Logger.Info("TLS certificate reloaded", "files", r.cfg.Name, "cert_file", r.cfg.CertFile,
					"subject", leaf.Subject.CommonName, "serial", serialString(leaf.SerialNumber), "not_after", leaf.NotAfter.UTC())
			}
			r.lastErr = ""
			return changed, nil
		}
	}
	if always || err.Error() != r.lastErr {
		r.cfg.Logger.Warn("TLS certificate not reloaded: keeping the one in use", "files", r.cfg.Name, "err", err)
	}
	r.lastErr = err.Error()
	return false, err
}

// Run checks the files every Interval until ctx ends, and reloads them when
// they change.
func (r *Reloader) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.reload(false)
		}
	}
}

// Certificate returns the certificate in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// ServerConfig returns a server configuration that presents the current
// certificate. With clientAuth, clients must present a certificate that
// chains to the CA file (which New then requires).
func (r *Reloader) ServerConfig(clientAuth bool) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:     MinVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil },
	}
	if clientAuth {
		if r.pool == nil {
			return nil, errors.New("tlsconfig: client certificates are required but there is no CA file to check them with")
		}
		c.ClientCAs = r.pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// ClientConfig returns a client configuration that presents the current
// certificate when the server asks for one, and trusts the servers whose
// certificate chains to the CA file (the system's roots without one).
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           MinVersion,
		RootCAs:              r.pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.cert.Load(), nil },
	}
}

// MutualConfig returns the configuration of a link whose both ends present
// certificates that chain to the CA file, as distkv's peer links: it serves
// as the server's configuration of accepted connections and as the client's
// of dialed ones.
func (r *Reloader) MutualConfig() (*tls.Config, error) {
	c, err := r.ServerConfig(true)
	if err != nil {
		return nil, err
	}
	cc := r.ClientConfig()
	c.RootCAs, c.GetClientCertificate = cc.RootCAs, cc.GetClientCertificate
	return c, nil
}

func serialString(n *big.Int) string {
	if n == nil {
		return ""
	}
	return fmt.Sprintf("%x", n)
}
