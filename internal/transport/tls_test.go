package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// selfSignedTLS returns a configuration for mutual TLS between nodes that
// share one self-signed certificate for 127.0.0.1.
func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "distkv test node"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// TestTLS runs Raft messages, calls and a snapshot over mutual TLS, and
// checks that a plain-TCP node cannot talk to a TLS node.
func TestTLS(t *testing.T) {
	tlsCfg := selfSignedTLS(t)
	ra, rb := newRecorder(), newRecorder()
	rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		return bytes.ToUpper(payload), nil
	}
	var snapSum [32]byte
	rb.snap = func(from, shard uint64, r io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		h.Sum(snapSum[:0])
		return nil
	}
	cfgA, cfgB := testConfig(1, ra), testConfig(2, rb)
	cfgA.TLS, cfgB.TLS = tlsCfg, tlsCfg
	cfgA.QueueSize = 1 << 16 // all of it may be queued at once: nothing is dropped
	a, b := start(t, cfgA), start(t, cfgB)
	mesh(a, b)
	waitConnected(t, a, 2)
	waitConnected(t, b, 1)

	const n = 2000
	for shard := uint64(1); shard <= 3; shard++ {
		msgs := make([]raftpb.Message, n)
		for i := range msgs {
			msgs[i] = app(1, 2, uint64(i), []byte("over TLS"))
		}
		a.Send(shard, msgs)
	}
	b.Send(1, []raftpb.Message{heartbeat(2, 1, 0)})
	waitFor(t, 10*time.Second, "messages over TLS", func() (bool, string) {
		return rb.received() == 3*n && ra.received() == 1, fmt.Sprint(rb.received(), ra.received())
	})
	for shard := uint64(1); shard <= 3; shard++ {
		checkInOrder(t, rb.flow(1, shard), n, fmt.Sprintf("shard %d", shard))
	}
	if resp, err := a.Call(context.Background(), 2, 1, 1, []byte("hello")); err != nil || string(resp) != "HELLO" {
		t.Fatalf("Call over TLS = %q, %v", resp, err)
	}
	h := sha256.New()
	if err := a.SendSnapshot(context.Background(), 2, 1, io.TeeReader(genReader(5, 4<<20), h)); err != nil {
		t.Fatalf("SendSnapshot over TLS: %v", err)
	}
	if !bytes.Equal(snapSum[:], h.Sum(nil)) {
		t.Fatal("snapshot over TLS arrived damaged")
	}

	// A plain-TCP node cannot reach a TLS node.
	c := start(t, testConfig(3, newRecorder()))
	c.AddPeer(2, b.Addr().String())
	if _, err := c.Call(context.Background(), 2, 1, 1, nil); err == nil {
		t.Fatal("plain-TCP call to a TLS node succeeded")
	}
	if c.Stats()[2].Connected {
		t.Fatal("plain-TCP node connected to a TLS node")
	}
	// Nor a TLS node without a trusted certificate.
	other := selfSignedTLS(t)
	cfgD := testConfig(4, newRecorder())
	cfgD.TLS = other
	d := start(t, cfgD)
	d.AddPeer(2, b.Addr().String())
	_, err := d.Call(context.Background(), 2, 1, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("call with an untrusted certificate = %v", err)
	}
}
