package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/distkv/distkv/internal/tlsconfig"
)

// tlsOptions are the TLS flags of distkv server.
type tlsOptions struct {
	certFile, keyFile, clientCAFile       string
	peerCertFile, peerKeyFile, peerCAFile string
}

func addTLSFlags(f *pflag.FlagSet, o *tlsOptions) {
	f.StringVar(&o.certFile, "tls-cert-file", "", "serve the HTTP API over TLS with this PEM certificate (re-read when it changes or on SIGHUP); needs --tls-key-file")
	f.StringVar(&o.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringVar(&o.clientCAFile, "tls-client-ca-file", "", "require every HTTP API client to present a certificate signed by a CA of this PEM file (needs --tls-cert-file)")
	f.StringVar(&o.peerCertFile, "peer-tls-cert-file", "", "secure the peer links with mutual TLS: this node's PEM certificate, presented to peers both when accepting and when dialing (re-read when it changes or on SIGHUP); needs --peer-tls-key-file and --peer-tls-ca-file")
	f.StringVar(&o.peerKeyFile, "peer-tls-key-file", "", "PEM private key of --peer-tls-cert-file")
	f.StringVar(&o.peerCAFile, "peer-tls-ca-file", "", "PEM file of the CAs that sign the members' peer certificates; a peer whose certificate another CA signed is refused at the handshake")
}

// serverTLS is a node's TLS: the configurations of its HTTP listener, its
// peer transport and the HTTP requests it makes to other members (--join),
// and the reloaders that keep their certificates current.
type serverTLS struct {
	api, peer *tlsconfig.Reloader // nil: that side is plain TCP
	// apiServer serves the HTTP API; nil without --tls-cert-file.
	apiServer *tls.Config
	// peerMutual serves and dials peer links; nil without peer TLS.
	peerMutual *tls.Config
	// memberClient is what this node uses to call another member's HTTP
	// API over https (--join): it trusts the peer and client CAs and
	// presents this node's certificate (peer certificate first). Nil
	// without any TLS.
	memberClient *tls.Config
}

// newServerTLS reads the files that o names; all flags empty is no TLS.
func newServerTLS(o tlsOptions, logger *slog.Logger) (*serverTLS, error) {
	s := &serverTLS{}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together: give both or neither")
	}
	if o.clientCAFile != "" && o.certFile == "" {
		return nil, errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are checked only over TLS")
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"--peer-tls-cert-file", o.peerCertFile}, {"--peer-tls-key-file", o.peerKeyFile}, {"--peer-tls-ca-file", o.peerCAFile},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) == 1 || len(missing) == 2 {
		return nil, fmt.Errorf("peer TLS is always mutual and needs --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file: %s missing", strings.Join(missing, " and "))
	}
	var err error
	if o.certFile != "" {
		s.api, err = tlsconfig.New(tlsconfig.Config{CertFile: o.certFile, KeyFile: o.keyFile, CAFile: o.clientCAFile, Name: "api", Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("HTTP API TLS: %w", err)
		}
		if s.apiServer, err = s.api.ServerConfig(o.clientCAFile != ""); err != nil {
			return nil, err
		}
		// The API speaks HTTP/1.1, over TLS as over plain TCP.
		s.apiServer.NextProtos = []string{"http/1.1"}
	}
	if len(missing) == 0 {
		s.peer, err = tlsconfig.New(tlsconfig.Config{CertFile: o.peerCertFile, KeyFile: o.peerKeyFile, CAFile: o.peerCAFile, Name: "peer", Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		if s.peerMutual, err = s.peer.MutualConfig(); err != nil {
			return nil, err
		}
	}
	if s.api != nil || s.peer != nil {
		var cas []string
		for _, f := range []string{o.peerCAFile, o.clientCAFile} {
			if f != "" {
				cas = append(cas, f)
			}
		}
		own := s.peer
		if own == nil {
			own = s.api
		}
		s.memberClient = own.ClientConfig()
		if len(cas) > 0 {
			if s.memberClient.RootCAs, err = tlsconfig.LoadPool(cas...); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// start runs the reloaders: each checks its files every second, and SIGHUP
// makes both re-read them at once. The returned function stops them and
// waits until they have.
func (s *serverTLS) start(logger *slog.Logger) (stop func()) {
	var rs []*tlsconfig.Reloader
	for _, r := range []*tlsconfig.Reloader{s.api, s.peer} {
		if r != nil {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.Run(ctx) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: re-reading the TLS certificates")
				for _, r := range rs {
					r.Reload() // a failure is logged and keeps the certificate in use
				}
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// memberURL is the base URL of another member's HTTP API given as host:port
// or URL (--join): without a scheme it is https when this node serves its
// own API over TLS.
func (s *serverTLS) memberURL(addr string) string {
	base := strings.TrimRight(addr, "/")
	if strings.Contains(base, "://") {
		return base
	}
	if s.apiServer != nil {
		return "https://" + base
	}
	return "http://" + base
}

// memberHTTPClient returns the client of requests to other members.
func (s *serverTLS) memberHTTPClient(timeout time.Duration) *http.Client {
	if s.memberClient == nil {
		return &http.Client{Timeout: timeout}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.memberClient.Clone()
	return &http.Client{Timeout: timeout, Transport: tr}
}
