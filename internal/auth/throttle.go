package auth

import (
	"sync"
	"time"
)

// ThrottleConfig configures a Throttle. The zero value of a field means its
// default.
type ThrottleConfig struct {
	// Free is the number of failures of one key allowed before logins of
	// that key are slowed (default 5).
	Free int
	// Base is the wait after the first failure beyond Free; it doubles
	// with each further failure (default 1s), up to Max (default 1m).
	Base, Max time.Duration
	// Forget is how long after its last failure a key's count is dropped
	// (default 15m).
	Forget time.Duration
	// MaxKeys bounds the keys tracked (default 10000); past it the oldest
	// are dropped, so that a flood of addresses cannot exhaust memory.
	MaxKeys int
}

func (c *ThrottleConfig) fill() {
	if c.Free == 0 {
		c.Free = 5
	}
	if c.Base == 0 {
		c.Base = time.Second
	}
	if c.Max == 0 {
		c.Max = time.Minute
	}
	if c.Forget == 0 {
		c.Forget = 15 * time.Minute
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 10000
	}
}

// Throttle slows failed logins: each key (a user name, a client address)
// that failed more than Free times must wait, after its last failure, a time
// that doubles with each failure. It is one node's memory, not replicated.
// It is safe for concurrent use.
type Throttle struct {
	cfg ThrottleConfig
	mu  sync.Mutex
	// keys holds the failures of each key. Invariant: len(keys) <=
	// cfg.MaxKeys.
	keys map[string]*failures // guarded by mu
}

type failures struct {
	n    int
	last time.Time
}

// NewThrottle returns a Throttle configured by cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	cfg.fill()
	return &Throttle{cfg: cfg, keys: map[string]*failures{}}
}

// Wait returns how long a login of keys must still wait at now; 0: it may
// go ahead.
func (t *Throttle) Wait(now time.Time, keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		f, ok := t.keys[k]
		if !ok {
			continue
		}
		if now.Sub(f.last) >= t.cfg.Forget {
			delete(t.keys, k)
			continue
		}
		wait = max(wait, f.last.Add(t.delay(f.n)).Sub(now))
	}
	return wait
}

// delay is the wait after the n-th failure.
func (t *Throttle) delay(n int) time.Duration {
	if n <= t.cfg.Free {
		return 0
	}
	d := t.cfg.Base
	for i := t.cfg.Free + 1; i < n && d < t.cfg.Max; i++ {
		d *= 2
	}
	return min(d, t.cfg.Max)
}

// Failed counts a failed login of keys at now.
func (t *Throttle) Failed(now time.Time, keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		f, ok := t.keys[k]
		if !ok || now.Sub(f.last) >= t.cfg.Forget {
			if !ok && len(t.keys) >= t.cfg.MaxKeys {
				t.evict(now)
			}
			f = &failures{}
			t.keys[k] = f
		}
		f.n++
		f.last = now
	}
}

// Succeeded forgets the failures of keys.
func (t *Throttle) Succeeded(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.keys, k)
	}
}

// evict drops the forgotten keys, or if there are none the oldest one, so
// that one more fits; t.mu is held.
func (t *Throttle) evict(now time.Time) {
	var oldest string
	var at time.Time
	for k, f := range t.keys {
		if now.Sub(f.last) >= t.cfg.Forget {
			delete(t.keys, k)
			continue
		}
		if oldest == "" || f.last.Before(at) {
			oldest, at = k, f.last
		}
	}
	if len(t.keys) >= t.cfg.MaxKeys {
		delete(t.keys, oldest)
	}
}
