package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/distkv/distkv/client"
)

// A cluster that serves TLS and requires client certificates (distkv
// server --tls-cert-file ... --tls-client-ca-file ...), with the files that
// `distkv certs` makes: host:port endpoints are https.
func ExampleLoadTLS() {
	tlsCfg, err := client.LoadTLS("certs/ca.crt", "certs/client-alice.crt", "certs/client-alice.key")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{Endpoints: []string{"10.0.0.1:8000", "10.0.0.2:8000"}, TLS: tlsCfg})
	if err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(context.Background(), "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kv.Value)
}
