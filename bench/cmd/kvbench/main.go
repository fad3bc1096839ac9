// Command kvbench is a closed-loop load generator for distkv, etcd, Redis and
// a do-nothing HTTP server (the machine's ceiling).
//
//	kvbench [flags]                 run a benchmark
//	kvbench serve-null --addr A     run the do-nothing server
//	kvbench serve-floor -role R ... run the replication floor (floor.go)
//	kvbench ranges -endpoints ...   wait for distkv's ranges to settle, print where they lie (ranges.go)
//
// Each of -clients workers keeps exactly one request in flight; latencies go
// into one HDR histogram per worker, merged at the end.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Target is one system under test. A target is shared by all workers and must
// be safe for concurrent use.
type Target interface {
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key; stale selects the store's non-linearizable read.
	Get(ctx context.Context, key string, stale bool) error
	Close() error
}

// Txner is a Target with transactions: Txn puts value on every key of keys
// in one atomic transaction.
type Txner interface {
	Txn(ctx context.Context, keys []string, value []byte) error
}

type config struct {
	target    string
	endpoints []string
	route     string
	clients   int
	duration  time.Duration
	ops       int64
	workload  string
	keys      int
	valueSize int
	dist      string
	zipfS     float64
	preload   bool
	timeout   time.Duration
	label     string
	conns     int
	quiet     bool
	tls       *tls.Config // HTTP targets: https with it (-cacert, -cert, -key)
	token     string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-null" {
		if err := serveNull(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench serve-null:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "serve-floor" {
		if err := serveFloor(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench serve-floor:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "ranges" {
		if err := serveRanges(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench ranges:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	var endpoints string
	fs := flag.NewFlagSet("kvbench", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kvbench [flags]\n       kvbench serve-null --addr 127.0.0.1:8100\n       kvbench serve-floor -role replica -listen 127.0.0.1:8301 -dir DIR\n       kvbench serve-floor -role primary -addr 127.0.0.1:8200 -dir DIR -replicas 127.0.0.1:8301,127.0.0.1:8302 -acks 1\n       kvbench ranges -endpoints 127.0.0.1:8000,127.0.0.1:8001 -settle 5s\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.target, "target", "distkv", "system under test: distkv, etcd, redis or null (null speaks distkv's HTTP API)")
	fs.StringVar(&endpoints, "endpoints", "", "comma-separated endpoints (host:port); default per target: distkv 127.0.0.1:8000,8001,8002; etcd 127.0.0.1:2379; redis 127.0.0.1:6379; null 127.0.0.1:8100")
	fs.StringVar(&c.route, "route", "rr", "HTTP targets: rr (each worker sticks to endpoint i%n, spreading workers round-robin), each (every request goes to the next endpoint in turn, as etcd's client balancer does) one (every worker uses the first endpoint) or leader (distkv only: every worker uses the leader's HTTP address, as the first endpoint's /cluster/status names it, so that no write is forwarded) or range (distkv only: each request goes to the leader of its key's range, as every endpoint's /cluster/ranges names it when the run starts; rr where none is known)")
	fs.IntVar(&c.clients, "clients", 64, "concurrent clients, each with one request in flight (1..1024)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run (ignored if -ops > 0)")
	fs.Int64Var(&c.ops, "ops", 0, "stop after this many operations in total (0: use -duration)")
	fs.StringVar(&c.workload, "workload", "write", "write, read (linearizable), stale, mixed50, mixed95 (95% linearizable reads), load (write every key once, in order, then stop), txn-near (a transaction putting keys 2i and 2i+1, neighbours, so in one range but at the few range bounds) or txn-far (putting keys i and i+keys/2, in different ranges once the key space has split into ranges of fewer than keys/2 keys)")
	fs.IntVar(&c.keys, "keys", 10000, "key space size")
	fs.IntVar(&c.valueSize, "value-size", 256, "value size in bytes (16..65536)")
	fs.StringVar(&c.dist, "dist", "uniform", "key distribution: uniform or zipf")
	fs.Float64Var(&c.zipfS, "zipf-s", 1.1, "zipf exponent (> 1)")
	fs.BoolVar(&c.preload, "preload", true, "before a workload with reads, write every key once (not measured)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&c.label, "label", "", "label printed in the RESULT line (default: target)")
	fs.IntVar(&c.conns, "conns", 1, "etcd: number of client connections shared by the workers")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	var caFile, certFile, keyFile string
	fs.StringVar(&caFile, "cacert", "", "HTTP targets: speak https, trusting the CA of this PEM file")
	fs.StringVar(&certFile, "cert", "", "HTTP targets: https with this PEM client certificate (needs -key)")
	fs.StringVar(&keyFile, "key", "", "PEM private key of -cert")
	fs.StringVar(&c.token, "token", os.Getenv("DISTKV_TOKEN"), "distkv with --auth: the bearer token sent with every request (default $DISTKV_TOKEN)")
	fs.Parse(os.Args[1:])
	var err error
	if c.tls, err = loadTLS(caFile, certFile, keyFile); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(2)
	}

	if err := c.validate(endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t, err := newTarget(ctx, &c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
	defer t.Close()
	res, err := run(ctx, t, &c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
	res.print(&c)
}

func (c *config) validate(endpoints string) error {
	if c.clients < 1 || c.clients > 1024 {
		return fmt.Errorf("-clients must be 1..1024, got %d", c.clients)
	}
	if c.valueSize < 16 || c.valueSize > 64<<10 {
		return fmt.Errorf("-value-size must be 16..65536, got %d", c.valueSize)
	}
	if c.keys < 1 {
		return fmt.Errorf("-keys must be at least 1")
	}
	switch c.workload {
	case "write", "read", "stale", "mixed50", "mixed95", "load":
	case "txn-near", "txn-far":
		if c.target != "distkv" && c.target != "etcd" {
			return fmt.Errorf("-workload %s is for -target distkv or etcd", c.workload)
		}
		if c.keys < 2 {
			return fmt.Errorf("-workload %s needs -keys 2 or more", c.workload)
		}
	default:
		return fmt.Errorf("unknown -workload %q", c.workload)
	}
	switch c.dist {
	case "uniform", "zipf":
	default:
		return fmt.Errorf("unknown -dist %q", c.dist)
	}
	if c.dist == "zipf" && c.zipfS <= 1 {
		return fmt.Errorf("-zipf-s must be > 1")
	}
	switch c.route {
	case "rr", "one", "each":
	case "leader", "range":
		if c.target != "distkv" {
			return fmt.Errorf("-route %s is for -target distkv", c.route)
		}
	default:
		return fmt.Errorf("unknown -route %q", c.route)
	}
	if c.conns < 1 {
		c.conns = 1
	}
	if c.ops <= 0 && c.duration <= 0 {
		return fmt.Errorf("need -duration > 0 or -ops > 0")
	}
	if endpoints == "" {
		endpoints = map[string]string{
			"distkv": "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002",
			"etcd":   "127.0.0.1:2379",
			"redis":  "127.0.0.1:6379",
			"null":   "127.0.0.1:8100",
		}[c.target]
		if endpoints == "" {
			return fmt.Errorf("unknown -target %q", c.target)
		}
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.endpoints = append(c.endpoints, e)
		}
	}
	if c.label == "" {
		c.label = c.target
	}
	return nil
}

func newTarget(ctx context.Context, c *config) (Target, error) {
	switch c.target {
	case "distkv", "null":
		t := newHTTPTarget(c)
		if c.route == "leader" {
			base, err := t.leaderBase(ctx)
			if err != nil {
				return nil, err
			}
			t.bases, t.route = []string{base}, "one"
		}
		if c.route == "range" {
			if err := t.useRangeLeaders(ctx, c.quiet); err != nil {
				return nil, err
			}
		}
		return t, nil
	case "etcd":
		return newEtcdTarget(ctx, c)
	case "redis":
		return newRedisTarget(ctx, c)
	}
	return nil, fmt.Errorf("unknown -target %q", c.target)
}

// keyName is key i: 16 bytes for i below 10^10.
func keyName(i int) string { return fmt.Sprintf("bench-%010d", i) }

// txnPair returns the keys of the transaction that -workload txn-near or
// txn-far makes of key index k, nil for other workloads.
func txnPair(c *config, k int) []string {
	switch c.workload {
	case "txn-near":
		i := k &^ 1
		if i+1 >= c.keys {
			i -= 2
		}
		return []string{keyName(i), keyName(i + 1)}
	case "txn-far":
		return []string{keyName(k), keyName((k + c.keys/2) % c.keys)}
	}
	return nil
}

// readFraction is the share of operations that are reads, in percent.
func (c *config) readPercent() int {
	switch c.workload {
	case "read", "stale":
		return 100
	case "mixed50":
		return 50
	case "mixed95":
		return 95
	}
	return 0
}

type result struct {
	hist    *hdrhistogram.Histogram
	ops     int64
	errors  int64
	elapsed time.Duration
	lastErr string
}

// preload writes every key once with all workers so reads find values.
func preload(ctx context.Context, t Target, c *config) error {
	start := time.Now()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < c.clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			val := makeValue(c.valueSize, uint64(w))
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(c.keys) {
					return
				}
				rctx, cancel := context.WithTimeout(withWorker(ctx, w), c.timeout)
				err := t.Put(rctx, keyName(int(i)), val)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}(w)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("preload: %d of %d writes failed, first: %v", n, c.keys, firstErr.Load())
	}
	if !c.quiet {
		fmt.Fprintf(os.Stderr, "preloaded %d keys in %.1fs\n", c.keys, time.Since(start).Seconds())
	}
	return ctx.Err()
}

func makeValue(n int, seed uint64) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[r.IntN(len(letters))]
	}
	return b
}

func run(ctx context.Context, t Target, c *config) (*result, error) {
	if c.workload == "load" {
		// Every key once: the run is over when the key space is.
		c.ops = int64(c.keys)
	}
	if c.preload && c.readPercent() > 0 {
		if err := preload(ctx, t, c); err != nil {
			return nil, err
		}
	}
	runCtx := ctx
	var cancel context.CancelFunc
	if c.ops <= 0 {
		runCtx, cancel = context.WithTimeout(ctx, c.duration)
	} else {
		runCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	var done, errs, issued atomic.Int64
	var lastErr atomic.Value
	hists := make([]*hdrhistogram.Histogram, c.clients)
	readPct := c.readPercent()
	stale := c.workload == "stale"
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c.clients; w++ {
		// 1 µs .. 60 s, 3 significant digits.
		h := hdrhistogram.New(1, 60_000_000, 3)
		hists[w] = h
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
			var zipf *rand.Zipf
			if c.dist == "zipf" {
				zipf = rand.NewZipf(r, c.zipfS, 1, uint64(c.keys-1))
			}
			val := makeValue(c.valueSize, uint64(w)+1000)
			wctx := withWorker(runCtx, w)
			for runCtx.Err() == nil {
				var seq int64 // 1-based number of this operation, with -ops
				if c.ops > 0 {
					if seq = issued.Add(1); seq > c.ops {
						return // budget spent; the others finish their request in flight
					}
				}
				var k int
				if c.workload == "load" {
					k = int(seq - 1) // the budget is the key space
				} else if zipf != nil {
					k = int(zipf.Uint64())
				} else {
					k = r.IntN(c.keys)
				}
				key := keyName(k)
				isRead := readPct == 100 || (readPct > 0 && r.IntN(100) < readPct)
				rctx, rcancel := context.WithTimeout(wctx, c.timeout)
				t0 := time.Now()
				var err error
				if pair := txnPair(c, k); pair != nil {
					err = t.(Txner).Txn(rctx, pair, val)
				} else if isRead {
					err = t.Get(rctx, key, stale)
				} else {
					err = t.Put(rctx, key, val)
				}
				lat := time.Since(t0)
				rcancel()
				if err != nil {
					if runCtx.Err() != nil {
						return // cut off by the end of the run: not an error
					}
					errs.Add(1)
					lastErr.Store(err.Error())
					continue
				}
				h.RecordValue(lat.Microseconds())
				done.Add(1)
			}
		}(w)
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if c.quiet {
			<-stopProgress
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prev int64
		for {
			select {
			case <-stopProgress:
				return
			case now := <-tick.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "%s %s %5.1fs  %8d ops/s  total %d  errors %d\n",
					c.label, c.workload, now.Sub(start).Seconds(), d-prev, d, errs.Load())
				prev = d
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	<-progressDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	total := hdrhistogram.New(1, 60_000_000, 3)
	for _, h := range hists {
		total.Merge(h)
	}
	res := &result{hist: total, ops: done.Load(), errors: errs.Load(), elapsed: elapsed}
	if s, ok := lastErr.Load().(string); ok {
		res.lastErr = s
	}
	return res, nil
}

func ms(us int64) float64 { return float64(us) / 1000 }

func (r *result) print(c *config) {
	h := r.hist
	opsPerSec := float64(r.ops) / r.elapsed.Seconds()
	fmt.Printf("target %s (%s)  workload %s  clients %d  keys %d (%s)  value %d B  %.1fs\n",
		c.label, strings.Join(c.endpoints, ","), c.workload, c.clients, c.keys, c.dist, c.valueSize, r.elapsed.Seconds())
	fmt.Printf("  ops/s   %10.0f  (%d ops, %d errors)\n", opsPerSec, r.ops, r.errors)
	fmt.Printf("  latency p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n",
		ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9)), ms(h.Max()))
	if r.lastErr != "" {
		fmt.Printf("  last error: %s\n", r.lastErr)
	}
	// One machine-readable line for scripts (compare.sh).
	fmt.Printf("RESULT label=%s workload=%s clients=%d ops_s=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%d ops=%d\n",
		c.label, c.workload, c.clients, opsPerSec,
		ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9)), r.errors, r.ops)
}

type workerKey struct{}

// withWorker tags a context with the worker index so targets can pin a
// worker to one endpoint.
func withWorker(ctx context.Context, w int) context.Context {
	return context.WithValue(ctx, workerKey{}, w)
}

func workerOf(ctx context.Context) int {
	w, _ := ctx.Value(workerKey{}).(int)
	return w
}
