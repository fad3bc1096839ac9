package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/certs"
)

// recProxy is a TCP proxy that keeps every byte it moves, both ways, so a
// test can check what crossed a link.
type recProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	seen   bytes.Buffer
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newRecProxy(t *testing.T, target string) *recProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *recProxy) addr() string { return p.ln.Addr().String() }

func (p *recProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		d, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[d] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.copy(d, c)
		go p.copy(c, d)
	}
}

func (p *recProxy) copy(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.seen.Write(buf[:n])
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}

// reset closes every connection through the proxy: both ends must connect
// again, with new handshakes.
func (p *recProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *recProxy) recorded() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.seen.Bytes())
}

func (p *recProxy) close() {
	p.ln.Close()
	p.reset()
	p.wg.Wait()
}

// pki is a CA and the certificates of a test, as files in dir.
type pki struct {
	t   *testing.T
	ca  *certs.CA
	dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := certs.NewCA("e2e CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, ca: ca, dir: t.TempDir()}
	if err := ca.Pair.WriteFiles(p.caFile(), filepath.Join(p.dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.crt") }

// node writes a certificate for node name on 127.0.0.1 and returns its
// files and serial.
func (p *pki) node(name string) (cert, key, serial string) {
	p.t.Helper()
	pair, err := p.ca.Node(name, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if err := pair.WriteFiles(cert, key); err != nil {
		p.t.Fatal(err)
	}
	return cert, key, serialOf(p.t, pair.CertPEM, pair.KeyPEM)
}

func (p *pki) client(user string) (cert, key string) {
	p.t.Helper()
	pair, err := p.ca.Client(user, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, "client-"+user+".crt"), filepath.Join(p.dir, "client-"+user+".key")
	if err := pair.WriteFiles(cert, key); err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

// tlsConfig is a client configuration that trusts p's CA and presents the
// certificate of certFile (none if empty).
func (p *pki) tlsConfig(certFile, keyFile string) *tls.Config {
	p.t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			p.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

func serialOf(t *testing.T, certPEM, keyPEM []byte) string {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}

// httpsClient returns a client over cfg that makes a new connection, and
// so a new handshake, for every request when fresh.
func httpsClient(cfg *tls.Config, fresh bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: fresh}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func send(c *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// tlsCluster is a cluster of distkv processes with TLS on the API (client
// certificates required) and on the peer links, each link through a
// recording proxy: node i dials node j through peerProxy[i][j], and the test
// reaches node i's API through apiProxy[i].
type tlsCluster struct {
	t         *testing.T
	pki       *pki
	names     []string
	servers   map[string]*server
	dirs      map[string]string
	httpAddr  map[string]string
	peerAddr  map[string]string
	certFile  map[string]string
	keyFile   map[string]string
	apiProxy  map[string]*recProxy
	peerProxy map[[2]string]*recProxy
	client    *http.Client // with the root user's certificate, through the API proxies
}

func startTLSCluster(t *testing.T, n int) *tlsCluster {
	t.Helper()
	c := &tlsCluster{t: t, pki: newPKI(t), servers: map[string]*server{}, dirs: map[string]string{},
		httpAddr: map[string]string{}, peerAddr: map[string]string{}, certFile: map[string]string{}, keyFile: map[string]string{},
		apiProxy: map[string]*recProxy{}, peerProxy: map[[2]string]*recProxy{}}
	var parts []string
	base := t.TempDir()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		c.names = append(c.names, name)
		c.httpAddr[name], c.peerAddr[name] = freePort(t), freePort(t)
		c.dirs[name] = filepath.Join(base, name)
		c.certFile[name], c.keyFile[name], _ = c.pki.node(name)
		c.apiProxy[name] = newRecProxy(t, c.httpAddr[name])
		parts = append(parts, name+"="+c.peerAddr[name])
	}
	for _, from := range c.names {
		for _, to := range c.names {
			if from != to {
				c.peerProxy[[2]string{from, to}] = newRecProxy(t, c.peerAddr[to])
			}
		}
	}
	cluster := strings.Join(parts, ",")
	for _, name := range c.names {
		var over []string
		for _, other := range c.names {
			if other != name {
				over = append(over, other+"="+c.peerProxy[[2]string{name, other}].addr())
			}
		}
		args := []string{"server", "--id", name, "--data-dir", c.dirs[name], "--http", c.httpAddr[name],
			"--peer", c.peerAddr[name], "--cluster", cluster, "--tick", testTick.String(),
			"--dial-override", strings.Join(over, ",")}
		args = append(args, c.tlsArgs(name)...)
		c.servers[name] = launch(t, c.dirs[name], c.httpAddr[name], args)
	}
	cert, key := c.pki.client("root")
	c.client = httpsClient(c.pki.tlsConfig(cert, key), false)
	for _, name := range c.names {
		c.waitReady(name)
	}
	return c
}

func (c *tlsCluster) tlsArgs(name string) []string {
	return []string{"--tls-cert-file", c.certFile[name], "--tls-key-file", c.keyFile[name], "--tls-client-ca-file", c.pki.caFile(),
		"--peer-tls-cert-file", c.certFile[name], "--peer-tls-key-file", c.keyFile[name], "--peer-tls-ca-file", c.pki.caFile()}
}

func (c *tlsCluster) url(name, path string) string {
	return "https://" + c.apiProxy[name].addr() + path
}

func (c *tlsCluster) waitReady(name string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-c.servers[name].exited:
			c.t.Fatalf("%s exited during start: %v", name, c.servers[name].cmd.ProcessState)
		default:
		}
		code, body, err := send(c.client, http.MethodGet, c.url(name, "/readyz"), "")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("%s not ready after 15s: %s", name, last)
}

// leader waits until every node names the same leader.
func (c *tlsCluster) leader() string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		seen = seen[:0]
		leaders := map[string]bool{}
		last := ""
		for _, n := range c.names {
			_, body, err := send(c.client, http.MethodGet, c.url(n, "/cluster/status"), "")
			var st statusBody
			if err == nil {
				err = json.Unmarshal([]byte(body), &st)
			}
			seen = append(seen, fmt.Sprintf("%s:%s/%v", n, st.Leader, err))
			leaders[st.Leader] = true
			last = st.Leader
		}
		if len(leaders) == 1 && last != "" {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader after 10s: %v", seen)
	return ""
}

func (c *tlsCluster) put(name, key, value string) {
	c.t.Helper()
	code, body, err := send(c.client, http.MethodPut, c.url(name, "/key/"+key), `{"value":"`+value+`"}`)
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("PUT %s on %s: %d %s %v", key, name, code, body, err)
	}
}

// get reads key linearizably on node name.
func (c *tlsCluster) get(name, key string) string {
	c.t.Helper()
	code, body, err := send(c.client, http.MethodGet, c.url(name, "/key/"+key), "")
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("GET %s on %s: %d %s %v", key, name, code, body, err)
	}
	return body
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestTLSCluster runs three nodes with TLS on the API (client certificates
// required) and on the peer links, every link through a proxy that records
// it: they elect a leader and serve writes on every node, a value written
// through the API is on no link in plaintext, and clients without a
// certificate, with one of another CA, or speaking TLS 1.2 are refused, as
// plain HTTP is, with the refusal net/http gives.
func TestTLSCluster(t *testing.T) {
	c := startTLSCluster(t, 3)
	leader := c.leader()
	t.Logf("leader %s", leader)

	secretKey, secret := "secret-"+randomHex(t, 8), "plaintext-"+randomHex(t, 16)
	c.put("n2", secretKey, secret)
	for _, n := range c.names {
		c.put(n, "k-"+n, "v-"+n)
		if got := c.get(n, secretKey); !strings.Contains(got, secret) {
			t.Fatalf("GET on %s = %s, want the secret value", n, got)
		}
	}

	// The CLI over TLS, with https assumed for host:port.
	cert, key := c.pki.client("cli")
	out, err := run(t, "get", "k-n1", "--endpoints", c.apiProxy["n3"].addr(), "--cacert", c.pki.caFile(), "--cert", cert, "--key", key)
	if err != nil || !strings.Contains(out, `"v-n1"`) {
		t.Fatalf("distkv get over TLS: %v %s", err, out)
	}
	if out, err := run(t, "get", "k-n1", "--endpoints", c.apiProxy["n3"].addr(), "--cacert", c.pki.caFile(), "--retry-for", "0"); err == nil {
		t.Fatalf("distkv get without a client certificate was served: %s", out)
	}

	// No link carried the key or the value in plaintext, and every link
	// carried traffic (the leader replicated the secret over each of its
	// links, each node was asked through its API link).
	links := map[string]*recProxy{}
	for n, p := range c.apiProxy {
		links["client->"+n] = p
	}
	for k, p := range c.peerProxy {
		links[k[0]+"->"+k[1]] = p
	}
	for name, p := range links {
		rec := p.recorded()
		if len(rec) == 0 {
			t.Errorf("link %s carried nothing: the proxies are not on the links", name)
		}
		for _, s := range []string{secret, secretKey} {
			if bytes.Contains(rec, []byte(s)) {
				t.Errorf("link %s carried %q in plaintext", name, s)
			}
		}
	}

	// Refused clients. TLS 1.3 clients learn that their certificate was
	// refused only when they read, so each sends a request.
	other := newPKI(t)
	otherCert, otherKey := other.client("root")
	foreign := c.pki.tlsConfig("", "")
	pair, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	foreign.Certificates = []tls.Certificate{pair}
	goodCert, goodKey := c.pki.client("root")
	tls12 := c.pki.tlsConfig(goodCert, goodKey)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	distrust := other.tlsConfig(goodCert, goodKey)
	for name, cfg := range map[string]*tls.Config{
		"without a certificate":                     c.pki.tlsConfig("", ""),
		"with a certificate of another CA":          foreign,
		"speaking TLS 1.2 at most":                  tls12,
		"trusting another CA (a node it distrusts)": distrust,
	} {
		code, body, err := send(httpsClient(cfg, true), http.MethodGet, "https://"+c.httpAddr["n1"]+"/key/"+secretKey, "")
		if err == nil {
			t.Errorf("client %s: served %d %s", name, code, body)
		} else {
			t.Logf("client %s: %v", name, err)
		}
	}
	// Plain HTTP on the TLS port: 400 and a sentence that says why.
	resp, err := http.Get("http://" + c.httpAddr["n1"] + "/key/" + secretKey)
	if err != nil {
		t.Fatalf("plain HTTP request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP on the TLS port: %d %q, want 400 saying it is an HTTPS server", resp.StatusCode, body)
	}
	if log := readLog(t, c.servers["n1"]); !strings.Contains(log, "client didn't provide a certificate") {
		t.Errorf("n1 did not log why it refused the client without a certificate:\n%s", tail([]byte(log), 3000))
	}
}

// TestTLSForeignPeerRefused starts a node whose peer certificate another CA
// signed, pointed at a serving cluster: every member refuses it at the TLS
// handshake and logs why, and the cluster goes on serving writes meanwhile.
func TestTLSForeignPeerRefused(t *testing.T) {
	c := startTLSCluster(t, 3)
	c.leader()

	other := newPKI(t)
	cert, key, _ := other.node("n9")
	// n9 trusts the cluster's CA but its own certificate is of another CA.
	// It is told of a cluster of n1 and itself: n1's name sorts first, so n9
	// asks n1 for the cluster id over the peer port, again and again, and
	// n1 must refuse it at the handshake.
	dir := filepath.Join(t.TempDir(), "n9")
	n9Peer, n9HTTP := freePort(t), freePort(t)
	args := []string{"server", "--id", "n9", "--data-dir", dir, "--http", n9HTTP, "--peer", n9Peer,
		"--cluster", "n1=" + c.peerAddr["n1"] + ",n9=" + n9Peer, "--tick", testTick.String(),
		"--tls-cert-file", cert, "--tls-key-file", key,
		"--peer-tls-cert-file", cert, "--peer-tls-key-file", key, "--peer-tls-ca-file", c.pki.caFile()}
	foreign := launch(t, dir, n9HTTP, args)

	// A foreign dialer too, in this process, at each member's peer port.
	foreignCfg := other.tlsConfig(cert, key)
	foreignCfg.InsecureSkipVerify = true // judge the member's refusal, not ours
	for _, n := range c.names {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", c.peerAddr[n], foreignCfg)
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Errorf("%s accepted a peer connection with a certificate of another CA", n)
		}
	}

	// The cluster serves while the stranger knocks.
	for i := 0; i < 30; i++ {
		c.put(c.names[i%3], fmt.Sprintf("during-%d", i), "v")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l1, lf := readLog(t, c.servers["n1"]), readLog(t, foreign)
		if strings.Contains(l1, "refused peer connection: TLS handshake failed") && strings.Contains(l1, "certificate signed by unknown authority") {
			for _, line := range strings.Split(l1, "\n") {
				if strings.Contains(line, "unknown authority") {
					t.Logf("n1 logged: %s", line)
					break
				}
			}
			for _, n := range c.names[1:] {
				if l := readLog(t, c.servers[n]); !strings.Contains(l, "certificate signed by unknown authority") {
					t.Errorf("%s did not log why it refused the foreign peer:\n%s", n, tail([]byte(l), 2000))
				}
			}
			if !strings.Contains(lf, "still waiting") && !strings.Contains(lf, "asking the member that creates the cluster id") {
				t.Logf("foreign node's log:\n%s", tail([]byte(lf), 2000))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 did not log a refusal naming the unknown authority:\n%s", tail([]byte(l1), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-foreign.exited:
		t.Fatalf("the foreign node exited: %v\n%s", foreign.cmd.ProcessState, tail([]byte(readLog(t, foreign)), 2000))
	default:
	}
	if got := c.get("n3", "during-29"); !strings.Contains(got, `"v"`) {
		t.Fatalf("GET during-29 = %s", got)
	}
}

// TestTLSCertificateRotation replaces n1's certificate files (API and peer)
// while clients write to it without pause, some over one connection, some
// with a new connection and handshake per request: new handshakes, on the
// API and on the peer port, present the new certificate, no request fails,
// and after every peer link is cut the nodes reconnect with it and serve.
func TestTLSCertificateRotation(t *testing.T) {
	c := startTLSCluster(t, 3)
	c.leader()
	cert, key := c.pki.client("writer")
	cfg := c.pki.tlsConfig(cert, key)
	oldSerial := serialOfFile(t, c.certFile["n1"], c.keyFile["n1"])

	var stop atomic.Bool
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := 0; w < 4; w++ {
		client := httpsClient(cfg, w%2 == 1)
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				code, body, err := send(client, http.MethodPut, c.url("n1", fmt.Sprintf("/key/rot-%d-%d", w, i)), `{"value":"x"}`)
				if err != nil || code != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", code, body, err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitCount(t, &ok, 50)

	_, _, newSerial := c.pki.node("n1") // replaces n1.crt and n1.key
	if newSerial == oldSerial {
		t.Fatal("the new certificate has the old serial")
	}
	peerCfg := c.pki.tlsConfig(c.certFile["n2"], c.keyFile["n2"])
	deadline := time.Now().Add(10 * time.Second)
	for {
		api := handshakeSerial(t, c.httpAddr["n1"], cfg)
		peer := handshakeSerial(t, c.peerAddr["n1"], peerCfg)
		if api == newSerial && peer == newSerial {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the rotation n1 presents %s on the API and %s on the peer port, want %s", api, peer, newSerial)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := ok.Load()
	waitCount(t, &ok, before+50)
	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests during the rotation, none failed", ok.Load())
	if log := readLog(t, c.servers["n1"]); !strings.Contains(log, "TLS certificate reloaded") {
		t.Errorf("n1 did not log the reload:\n%s", tail([]byte(log), 2000))
	}

	// Cut every peer link: the nodes reconnect, handshaking with n1's new
	// certificate both ways, and replicate again. (A write forwarded while a
	// link is down is lost in transit and times out, TLS or not: so the
	// write goes to the leader, retried should leadership move, and the
	// followers are read until the leader's appends reach them.)
	for _, p := range c.peerProxy {
		p.reset()
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, body, err := send(c.client, http.MethodPut, c.url(c.leader(), "/key/after-rotation"), `{"value":"yes"}`)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write served after the peer links were cut: %d %s %v", code, body, err)
		}
	}
	for _, n := range c.names {
		for {
			code, body, err := send(c.client, http.MethodGet, c.url(n, "/key/after-rotation?consistency=stale"), "")
			if err == nil && code == http.StatusOK && strings.Contains(body, `"yes"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not have the write made after the peer links were cut: %d %s %v", n, code, body, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func serialOfFile(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	c, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return serialOf(t, c, k)
}

// handshakeSerial makes a new TLS connection to addr and returns the serial
// of the certificate the server presents.
func handshakeSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSJoin: a node joins a TLS cluster through --join host:port, which
// is https when the node serves TLS itself, presenting its own certificate
// to the member's API.
func TestTLSJoin(t *testing.T) {
	p := newPKI(t)
	cert1, key1, _ := p.node("n1")
	cert2, key2, _ := p.node("n2")
	tlsArgs := func(cert, key string) []string {
		return []string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-file", p.caFile(),
			"--peer-tls-cert-file", cert, "--peer-tls-key-file", key, "--peer-tls-ca-file", p.caFile()}
	}
	base := t.TempDir()
	h1, p1, h2, p2 := freePort(t), freePort(t), freePort(t), freePort(t)
	s1 := launch(t, filepath.Join(base, "n1"), h1, append([]string{"server", "--id", "n1", "--data-dir", filepath.Join(base, "n1"),
		"--http", h1, "--peer", p1, "--tick", testTick.String()}, tlsArgs(cert1, key1)...))
	ccert, ckey := p.client("root")
	client := httpsClient(p.tlsConfig(ccert, ckey), false)
	waitTLSReady(t, s1, client, h1)
	s2 := launch(t, filepath.Join(base, "n2"), h2, append([]string{"server", "--id", "n2", "--data-dir", filepath.Join(base, "n2"),
		"--http", h2, "--peer", p2, "--join", h1, "--tick", testTick.String()}, tlsArgs(cert2, key2)...))
	waitTLSReady(t, s2, client, h2)
	code, body, err := send(client, http.MethodPut, "https://"+h1+"/key/joined", `{"value":"over tls"}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("PUT: %d %s %v", code, body, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := send(client, http.MethodGet, "https://"+h2+"/key/joined?consistency=stale", "")
		if err == nil && code == http.StatusOK && strings.Contains(body, "over tls") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the joined node does not have the write: %d %s %v\n%s", code, body, err, tail([]byte(readLog(t, s2)), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, body, _ = send(client, http.MethodGet, "https://"+h1+"/cluster_status", "")
	if !strings.Contains(body, `"url":"https://`+h2+`"`) {
		t.Errorf("/cluster_status does not give the joined node's https URL: %s", body)
	}
}

func waitTLSReady(t *testing.T, s *server, client *http.Client, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("server %s exited during start: %v", addr, s.cmd.ProcessState)
		default:
		}
		code, body, err := send(client, http.MethodGet, "https://"+addr+"/readyz", "")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server %s not ready after 15s: %s", addr, last)
}

// TestDevSecure starts `distkv dev --secure`, follows the lines it prints
// on how to reach the cluster (the files of the curl line, the distkv get
// line as printed), and checks that the nodes refuse plain HTTP and clients
// without a certificate.
func TestDevSecure(t *testing.T) {
	httpBase := freePortRange(t, 3)
	peerBase := freePortRange(t, 3)
	cmd := command(t, "dev", "--secure", "--nodes", "3", "--data-dir", t.TempDir(),
		"--http-port", fmt.Sprint(httpBase), "--peer-port", fmt.Sprint(peerBase), "--", "--tick", "20ms")
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("dev did not exit within 30s of SIGINT")
		}
	}()
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "nodes running") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
		done <- cmd.Wait()
	}()
	printed := strings.Join(lines, "\n")
	files := regexp.MustCompile(`curl --cacert (\S+) --cert (\S+) --key (\S+) .* https://(\S+)/key/hello`).FindStringSubmatch(printed)
	getLine := regexp.MustCompile(`distkv dev:\s+distkv (get hello .*)`).FindStringSubmatch(printed)
	if files == nil || getLine == nil {
		t.Fatalf("dev --secure printed no curl and distkv lines to reach it:\n%s", printed)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(files[1])
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA file %s: %v", files[1], err)
	}
	pair, err := tls.LoadX509KeyPair(files[2], files[3])
	if err != nil {
		t.Fatal(err)
	}
	client := httpsClient(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}, false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := send(client, http.MethodPut, "https://"+files[4]+"/key/hello", `{"value":"world"}`)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT through the printed address: %d %s %v\n%s", code, body, err, printed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := run(t, strings.Fields(getLine[1])...)
	if err != nil || !strings.Contains(got, `"world"`) {
		t.Fatalf("the printed distkv get line: %v %s", err, got)
	}
	// Authentication is on: the certificate is user root, whose password
	// is in the file named; a wrong token is refused.
	pwFile := regexp.MustCompile(`its password is in (\S+) `).FindStringSubmatch(printed)
	if pwFile == nil {
		t.Fatalf("dev --secure does not say where root's password is:\n%s", printed)
	}
	pw, err := os.ReadFile(pwFile[1])
	if err != nil {
		t.Fatal(err)
	}
	login := fmt.Sprintf(`{"user":"root","password":%q}`, strings.TrimSpace(string(pw)))
	if code, body, err := send(client, http.MethodPost, "https://"+files[4]+"/auth/token", login); err != nil || code != http.StatusOK || !strings.Contains(body, `"token"`) {
		t.Fatalf("POST /auth/token as root with the printed password: %d %s %v", code, body, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+files[4]+"/key/hello", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token with auth on: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	for i := 0; i < 3; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", httpBase+i)
		if _, _, err := send(httpsClient(&tls.Config{RootCAs: pool}, true), http.MethodGet, "https://"+addr+"/key/hello", ""); err == nil {
			t.Errorf("node %d served a client without a certificate", i+1)
		}
		resp, err := http.Get("http://" + addr + "/key/hello")
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("node %d: plain HTTP answered %v %v, want 400", i+1, resp, err)
		}
	}
}

// TestTLSSIGHUP: SIGHUP makes a node with TLS re-read its certificate files
// (and log it) rather than exit, as it would without a handler.
func TestTLSSIGHUP(t *testing.T) {
	p := newPKI(t)
	cert, key, _ := p.node("n1")
	dir := filepath.Join(t.TempDir(), "n1")
	h := freePort(t)
	s := launch(t, dir, h, []string{"server", "--id", "n1", "--data-dir", dir, "--http", h, "--peer", freePort(t), "--tick", testTick.String(),
		"--tls-cert-file", cert, "--tls-key-file", key})
	client := httpsClient(p.tlsConfig("", ""), true)
	waitTLSReady(t, s, client, h)
	_, _, want := p.node("n1")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := readLog(t, s)
		if strings.Contains(log, "SIGHUP: re-reading the TLS certificates") && strings.Contains(log, "TLS certificate reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged after SIGHUP:\n%s", tail([]byte(log), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := handshakeSerial(t, h, p.tlsConfig("", "")); got != want {
		t.Errorf("after SIGHUP the node presents serial %s, want the new %s", got, want)
	}
	select {
	case <-s.exited:
		t.Fatalf("SIGHUP stopped the node: %v", s.cmd.ProcessState)
	default:
	}
	if code, body, err := send(client, http.MethodPut, "https://"+h+"/key/k", `{"value":"v"}`); err != nil || code != http.StatusOK {
		t.Fatalf("PUT after SIGHUP: %d %s %v", code, body, err)
	}
}
