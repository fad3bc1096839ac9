package httpapi

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxKeySize       = 4096
	DefaultMaxValueSize     = 1 << 20
	DefaultRequestTimeout   = 5 * time.Second
	DefaultMaxScanLimit     = 10000
	DefaultDefaultScanLimit = 1000
	DefaultMaxTxnOps        = 128
	DefaultRequestDedupTTL  = time.Hour

	// maxValueSizeCeiling bounds MaxValueSize so that the derived request body
	// limit (see bodyLimit) cannot overflow and stays a sane amount of memory.
	maxValueSizeCeiling = 1 << 30
)

// Config configures the HTTP API of one node. The zero value of every field means
// its default.
type Config struct {
	// StreamsEnd, once closed, ends every stream the API serves (GET
	// /watch): the server closes it as it shuts down, since it waits for
	// every request to end. Nil: streams end with their clients only.
	StreamsEnd <-chan struct{}
	// MaxKeySize is the largest accepted key, in bytes after percent-decoding
	// (default 4096). Longer keys get 413.
	MaxKeySize int
	// MaxValueSize is the largest accepted value, in bytes after JSON decoding
	// (default 1 MiB). Longer values get 413. It also bounds the request body:
	// see the package documentation.
	MaxValueSize int
	// RequestTimeout is the deadline given to the Backend for each request
	// (default 5s). A request that hits it gets 503.
	RequestTimeout time.Duration
	// MaxScanLimit is the largest accepted limit of GET /keys (default 10000).
	MaxScanLimit int
	// DefaultScanLimit is the page size of GET /keys without a limit parameter
	// (default 1000, or MaxScanLimit if that is smaller).
	DefaultScanLimit int
	// MaxTxnOps is the largest number of compares, and of operations in each
	// branch, of a POST /txn (default 128). More get 413.
	MaxTxnOps int
	// RequestDedupTTL is how long the outcome of a write with a request id
	// is kept, so that the same request is not applied again (default 1h).
	// Each write carries it: the expiry is decided by the log, not by the
	// node that applies it.
	RequestDedupTTL time.Duration
	// HeartbeatInterval is the Raft heartbeat interval, reported by GET
	// /cluster_status (0: not reported).
	HeartbeatInterval time.Duration
	// DataDir is the node's data directory. GET /segments and GET
	// /compaction/status list the files of its wal/ and snap/ directories
	// (read only); without it they answer 501.
	DataDir string
	// WALSegmentSize and SnapshotEntries are the node's settings, reported
	// by GET /segments and GET /compaction/status.
	WALSegmentSize  int64
	SnapshotEntries uint64
	// TLS reports that the API is served over TLS: GET /cluster_status
	// gives the members' URLs as https://.
	TLS bool
	// Logger receives debug records about failed backend calls (default: discard).
	Logger *slog.Logger
	// Auth, if not nil, turns on authentication and authorization (see
	// AuthConfig); the Backend must then be an AuthBackend. Nil: every
	// request is served as before, and /auth/ paths are 404.
	Auth *AuthConfig
}

// Validate fills zero fields with their defaults and reports the first invalid
// field.
func (c *Config) Validate() error {
	if c.MaxKeySize == 0 {
		c.MaxKeySize = DefaultMaxKeySize
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = DefaultMaxValueSize
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxScanLimit == 0 {
		c.MaxScanLimit = DefaultMaxScanLimit
	}
	if c.DefaultScanLimit == 0 {
		c.DefaultScanLimit = min(DefaultDefaultScanLimit, c.MaxScanLimit)
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.RequestDedupTTL == 0 {
		c.RequestDedupTTL = DefaultRequestDedupTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.MaxKeySize < 0:
		return fmt.Errorf("httpapi: MaxKeySize is %d; it must be positive", c.MaxKeySize)
	case c.MaxValueSize < 0 || c.MaxValueSize > maxValueSizeCeiling:
		return fmt.Errorf("httpapi: MaxValueSize is %d; it must be from 1 to %d", c.MaxValueSize, maxValueSizeCeiling)
	case c.RequestTimeout < 0:
		return fmt.Errorf("httpapi: RequestTimeout is %v; it must be positive", c.RequestTimeout)
	case c.MaxScanLimit < 0:
		return fmt.Errorf("httpapi: MaxScanLimit is %d; it must be positive", c.MaxScanLimit)
	case c.DefaultScanLimit < 0 || c.DefaultScanLimit > c.MaxScanLimit:
		return fmt.Errorf("httpapi: DefaultScanLimit is %d; it must be from 1 to MaxScanLimit (%d)", c.DefaultScanLimit, c.MaxScanLimit)
	case c.MaxTxnOps < 0:
		return fmt.Errorf("httpapi: MaxTxnOps is %d; it must be positive", c.MaxTxnOps)
	case c.RequestDedupTTL < 0:
		return fmt.Errorf("httpapi: RequestDedupTTL is %v; it must be positive", c.RequestDedupTTL)
	}
	return nil
}

// bodyLimit is the largest request body accepted. The JSON encoding of a value
// of n bytes takes at most 6n bytes (every byte written as \u00XX), plus room
// for the conditions, field names and whitespace.
func (c *Config) bodyLimit() int64 {
	return 6*int64(c.MaxValueSize) + 64<<10
}
