package main

import (
	"github.com/spf13/pflag"

	"github.com/distkv/distkv/client"
)

// clientTLSFlags are the TLS flags of the client commands.
type clientTLSFlags struct{ cacert, cert, key string }

func (t *clientTLSFlags) add(f *pflag.FlagSet) {
	f.StringVar(&t.cacert, "cacert", "", "PEM file of the CA that signed the nodes' certificates; with it (or --cert) endpoints given as host:port are https")
	f.StringVar(&t.cert, "cert", "", "PEM client certificate, for nodes that require one (--tls-client-ca-file); needs --key")
	f.StringVar(&t.key, "key", "", "PEM private key of --cert")
}

// apply sets cfg.TLS if any of the flags is given.
func (t *clientTLSFlags) apply(cfg *client.Config) error {
	if t.cacert == "" && t.cert == "" && t.key == "" {
		return nil
	}
	tc, err := client.LoadTLS(t.cacert, t.cert, t.key)
	if err != nil {
		return err
	}
	cfg.TLS = tc
	return nil
}
