package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/internal/certs"
)

// The files of `distkv certs`, in its --dir.
const (
	caCertName = "ca.crt"
	caKeyName  = "ca.key"
)

func nodeCertFiles(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

func clientCertFiles(dir, user string) (cert, key string) {
	return filepath.Join(dir, "client-"+user+".crt"), filepath.Join(dir, "client-"+user+".key")
}

func newCertsCommand() *cobra.Command {
	var dir string
	var days int
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA, node certificates and client certificates for TLS (no openssl needed)",
		Long: `Make the certificates a cluster needs for TLS, in --dir:

  distkv certs ca                              ca.crt, ca.key
  distkv certs node n1 --hosts n1.example,10.0.0.1   n1.crt, n1.key
  distkv certs client alice                    client-alice.crt, client-alice.key

Node certificates serve as both server and client certificates (peer TLS is
mutual), so one pair per node serves --tls-cert-file and --peer-tls-cert-file.
A client certificate's common name is the user. Key files are written 0600.
Writing a node or client certificate again replaces it: a running node picks
up its new files within a second.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "certs", "directory of the CA and the certificates")
	cmd.PersistentFlags().IntVar(&days, "days", 0, "days the certificate is valid (default: 3650 for a CA, 365 for the others; never beyond the CA's)")
	validity := func() (time.Duration, error) {
		if days < 0 {
			return 0, fmt.Errorf("--days %d is negative", days)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}

	var caName string
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Make a certificate authority: ca.crt and ca.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := validity()
			if err != nil {
				return err
			}
			return makeCA(cmd.OutOrStdout(), dir, caName, v)
		},
	}
	ca.Flags().StringVar(&caName, "name", "distkv CA", "the CA's common name")

	var hosts []string
	node := &cobra.Command{
		Use:   "node NAME --hosts HOST,IP,...",
		Short: "Make a node's certificate (server and client use) signed by the CA: NAME.crt and NAME.key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := validity()
			if err != nil {
				return err
			}
			if err := checkFileName("node name", args[0]); err != nil {
				return err
			}
			return makeSigned(cmd.OutOrStdout(), dir, func(ca *certs.CA) (certs.Pair, string, string, error) {
				p, err := ca.Node(args[0], hosts, v)
				c, k := nodeCertFiles(dir, args[0])
				return p, c, k, err
			})
		},
	}
	node.Flags().StringSliceVar(&hosts, "hosts", nil, "host names and IP addresses the node is reached at, by peers and clients (required)")
	node.MarkFlagRequired("hosts")

	clientCmd := &cobra.Command{
		Use:   "client USER",
		Short: "Make a client certificate for USER (its common name) signed by the CA: client-USER.crt and client-USER.key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := validity()
			if err != nil {
				return err
			}
			if err := checkFileName("user name", args[0]); err != nil {
				return err
			}
			return makeSigned(cmd.OutOrStdout(), dir, func(ca *certs.CA) (certs.Pair, string, string, error) {
				p, err := ca.Client(args[0], v)
				c, k := clientCertFiles(dir, args[0])
				return p, c, k, err
			})
		},
	}
	cmd.AddCommand(ca, node, clientCmd)
	return cmd
}

// checkFileName refuses a name that cannot be part of a file name in --dir.
func checkFileName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%s %q cannot name a file: no slashes", what, name)
	}
	return nil
}

// makeCA writes a new CA into dir; it refuses to replace one, whose
// certificates would all stop being trusted.
func makeCA(out io.Writer, dir, name string, validity time.Duration) error {
	certFile, keyFile := filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists: a new CA would make every certificate it signed untrusted; remove it first if that is what you want", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	ca, err := certs.NewCA(name, validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := ca.Pair.WriteFiles(certFile, keyFile); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s and %s (keep the key secret: whoever has it can make certificates the cluster trusts)\n", certFile, keyFile)
	return nil
}

// makeSigned loads the CA of dir, makes a certificate with it and writes it.
func makeSigned(out io.Writer, dir string, mk func(*certs.CA) (certs.Pair, string, string, error)) error {
	ca, err := certs.LoadCA(filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (make a CA first: distkv certs ca --dir %s)", err, dir)
		}
		return err
	}
	p, certFile, keyFile, err := mk(ca)
	if err != nil {
		return err
	}
	if err := p.WriteFiles(certFile, keyFile); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s and %s\n", certFile, keyFile)
	return nil
}
