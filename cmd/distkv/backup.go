package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/client"
	"github.com/distkv/distkv/internal/backup"
	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/vfs"
)

var _ httpapi.Backuper = backend{}

// Backup serves GET /backup. A key space in one range, held here: its
// state as raftnode.Node.Export copies it, read as snapshot pairs (with its
// client-session records and its history). Split into ranges: every key
// read at the cluster's current revision R, range after range in key order,
// after a state pair with group 1's auth state and R (kv.BackupStatePair);
// restored, it is one range that splits again as it grows.
func (b backend) Backup(ctx context.Context) (httpapi.BackupView, error) {
	if gs := b.n.Host().Groups(); len(gs) == 1 {
		if bounds := b.n.Bounds(); len(bounds.Start) == 0 && len(bounds.End) == 0 {
			e, err := b.n.Export(ctx)
			if err != nil {
				return httpapi.BackupView{}, err
			}
			return httpapi.BackupView{Shard: e.Shard, ClusterID: e.ClusterID, Revision: e.Index, Pairs: infallible(e.View.SnapshotPairs())}, nil
		}
	}
	rev, err := b.Revision(ctx)
	if err != nil {
		return httpapi.BackupView{}, err
	}
	if err := b.n.ReadBarrier(ctx); err != nil {
		return httpapi.BackupView{}, err
	}
	state := kv.BackupStatePair(b.n.KV().Auth(), rev)
	pairs := func(yield func(kv.KeyValue, error) bool) {
		if !yield(state, nil) {
			return
		}
		var buf []byte
		from := []byte{}
		for {
			// The stream outlives the request's first deadline: each page
			// gets one of its own.
			pctx, cancel := context.WithTimeout(context.Background(), backupPageTimeout)
			kvs, more, err := b.walk(pctx, from, nil, backupPageSize, true, rev)
			cancel()
			if err != nil {
				yield(kv.KeyValue{}, fmt.Errorf("read the keys from %q at revision %d: %w", from, rev, err))
				return
			}
			for _, p := range kvs {
				var fp kv.KeyValue
				fp, buf = kv.FoldPair(p, buf)
				if !yield(fp, nil) {
					return
				}
			}
			if !more || len(kvs) == 0 {
				return
			}
			from = append(slices.Clone(kvs[len(kvs)-1].Key), 0)
		}
	}
	return httpapi.BackupView{Shard: 1, ClusterID: b.n.ClusterID(), Revision: uint64(rev), Pairs: pairs}, nil
}

// A backup of several ranges reads backupPageSize keys at a time, each page
// within backupPageTimeout.
const (
	backupPageSize    = 1000
	backupPageTimeout = 30 * time.Second
)

// infallible is pairs as a sequence that never fails.
func infallible(pairs iter.Seq[kv.KeyValue]) iter.Seq2[kv.KeyValue, error] {
	return func(yield func(kv.KeyValue, error) bool) {
		for p := range pairs {
			if !yield(p, nil) {
				return
			}
		}
	}
}

// backupSummary is what `distkv backup` prints, and `distkv restore` too.
type backupSummary struct {
	File      string `json:"file"`
	Revision  uint64 `json:"revision"`
	Pairs     uint64 `json:"pairs"`
	Bytes     int64  `json:"bytes"`
	ClusterID string `json:"cluster_id,omitempty"`
	Created   string `json:"created"`
	Endpoint  string `json:"endpoint,omitempty"`
}

func newBackupCommands() []*cobra.Command {
	return []*cobra.Command{newBackupCommand(), newRestoreCommand()}
}

func newBackupCommand() *cobra.Command {
	var (
		endpoints []string
		out       string
		timeout   time.Duration
		tlsFlags  clientTLSFlags
		creds     credentials // auth.go
	)
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Copy the cluster's state, consistent at one revision, into FILE (checksummed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := client.Config{Endpoints: endpoints, Timeout: timeout, RetryFor: -1}
			if timeout <= 0 {
				cfg.Timeout = -1
			}
			if err := tlsFlags.apply(&cfg); err != nil {
				return err
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			if err := creds.apply(context.Background(), c); err != nil {
				return err
			}
			s, err := takeBackup(context.Background(), c, out, newProgress(os.Stderr))
			if err != nil {
				return err
			}
			b, _ := json.Marshal(s)
			os.Stdout.Write(append(b, '\n'))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&endpoints, "endpoints", []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}, "node HTTP addresses, tried in order")
	cmd.Flags().StringVar(&out, "out", "", "the backup file to write (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for a node to start sending (the copy itself is not bounded)")
	tlsFlags.add(cmd.Flags())
	creds.addFlags(cmd.Flags())
	cmd.MarkFlagRequired("out")
	return cmd
}

// takeBackup streams a backup into out.tmp while checking it, fsyncs it,
// checks the file again as it is on disk, and renames it to out.
func takeBackup(ctx context.Context, c *client.Client, out string, p *progress) (backupSummary, error) {
	tmp := out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // it holds every value
	if err != nil {
		return backupSummary{}, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The stream is checked as it arrives, for the progress (pairs) and to
	// fail early; the file is checked again once on disk.
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		_, err := backup.Verify(pr, p.update)
		io.Copy(io.Discard, pr) // a refused stream must not block the copy
		checked <- err
	}()
	info, err := c.Backup(ctx, io.MultiWriter(f, pw))
	pw.CloseWithError(err)
	verr := <-checked
	p.done()
	if err != nil {
		return backupSummary{}, err
	}
	if verr != nil {
		return backupSummary{}, fmt.Errorf("the backup %s sent does not check out: %w", info.Endpoint, verr)
	}
	if err := f.Sync(); err != nil {
		return backupSummary{}, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return backupSummary{}, fmt.Errorf("close %s: %w", tmp, err)
	}
	s, err := verifyFile(tmp)
	if err != nil {
		return backupSummary{}, err
	}
	if s.Revision != info.Revision {
		return backupSummary{}, fmt.Errorf("%s sent a backup at revision %d but announced %d", info.Endpoint, s.Revision, info.Revision)
	}
	if err := os.Rename(tmp, out); err != nil {
		return backupSummary{}, err
	}
	ok = true
	if err := vfs.Default.SyncDir(filepath.Dir(out)); err != nil {
		return backupSummary{}, fmt.Errorf("sync the directory of %s: %w", out, err)
	}
	sum := summarize(out, s)
	sum.Endpoint = info.Endpoint
	return sum, nil
}

func summarize(file string, s backup.Summary) backupSummary {
	return backupSummary{File: file, Revision: s.Revision, Pairs: s.Pairs, Bytes: s.Bytes,
		ClusterID: clusterIDString(s.ClusterID), Created: s.Created.Format(time.RFC3339)}
}

// verifyFile checks the whole backup file at path.
func verifyFile(path string) (backup.Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Summary{}, err
	}
	defer f.Close()
	s, err := backup.Verify(f, nil)
	if err != nil {
		return backup.Summary{}, fmt.Errorf("%s is not a usable backup: %w", path, err)
	}
	return s, nil
}

// progress reports a backup's progress on stderr: a line redrawn in place
// on a terminal, otherwise a line every few seconds.
type progress struct {
	w        io.Writer
	terminal bool
	start    time.Time
	last     atomic.Int64 // unix nanos of the last report
	every    time.Duration
}

func newProgress(f *os.File) *progress {
	p := &progress{w: f, start: time.Now(), every: 5 * time.Second}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		p.terminal, p.every = true, 100*time.Millisecond
	}
	return p
}

func (p *progress) update(bytes int64, pairs uint64) {
	if p == nil {
		return
	}
	now := time.Now()
	if now.UnixNano()-p.last.Load() < int64(p.every) {
		return
	}
	p.last.Store(now.UnixNano())
	line := fmt.Sprintf("backup: %s, %d pairs, %s", humanBytes(bytes), pairs, now.Sub(p.start).Round(time.Second))
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() {
	if p != nil && p.terminal {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return strconv.FormatInt(n, 10) + " B"
}

func newRestoreCommand() *cobra.Command {
	var from, dataDir, id, cluster, clusterID string
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data-dir DIR --id ID --cluster n1=host:port,...",
		Short: "Create a member's data directory of a new cluster from a backup file; then start it with `distkv server`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sum, newID, err := restore(from, dataDir, id, cluster, clusterID)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(struct {
				backupSummary
				DataDir      string `json:"data_dir"`
				NewClusterID string `json:"new_cluster_id"`
			}{sum, dataDir, clusterIDString(newID)})
			os.Stdout.Write(append(b, '\n'))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the backup file (required)")
	f.StringVar(&dataDir, "data-dir", "", "the data directory to create; must not exist or be empty (required)")
	f.StringVar(&id, "id", "", "this member's id in --cluster (required)")
	f.StringVar(&cluster, "cluster", "", "every member of the new cluster: n1=host:port,n2=host:port,... (peer addresses; required)")
	f.StringVar(&clusterID, "cluster-id", "", "the new cluster's id, 16 hex digits (default: derived from the backup and --cluster, the same for every member restored from the same file and list)")
	for _, name := range []string{"from", "data-dir", "id", "cluster"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// errStop ends the decoding of a backup that the consumer of its pairs
// stopped taking.
var errStop = errors.New("stopped")

// restore checks the backup file at from as a whole, then seeds dataDir as
// the member id of the new cluster listed in cluster.
func restore(from, dataDir, id, cluster, clusterIDFlag string) (backupSummary, uint64, error) {
	var self raftnode.Member
	for _, part := range strings.Split(cluster, ",") {
		if name, addr, ok := strings.Cut(strings.TrimSpace(part), "="); ok && name == id {
			self = raftnode.Member{Name: name, Peer: addr}
		}
	}
	if self.Name == "" {
		return backupSummary{}, 0, fmt.Errorf("--cluster does not list this member (--id %s)", id)
	}
	members, err := parseCluster(cluster, self)
	if err != nil {
		return backupSummary{}, 0, err
	}
	s, err := verifyFile(from)
	if err != nil {
		return backupSummary{}, 0, fmt.Errorf("refusing to restore: %w", err)
	}
	newID := newClusterIDFor(s.Nonce, members)
	if clusterIDFlag != "" {
		if newID, err = strconv.ParseUint(clusterIDFlag, 16, 64); err != nil || newID == 0 {
			return backupSummary{}, 0, fmt.Errorf("--cluster-id %q is not a non-zero hex id", clusterIDFlag)
		}
	}
	f, err := os.Open(from)
	if err != nil {
		return backupSummary{}, 0, err
	}
	defer f.Close()
	var decodeErr error
	pairs := func(yield func(kv.KeyValue) bool) {
		_, err := backup.Decode(f, func(p kv.KeyValue) error {
			if !yield(p) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			decodeErr = err
		}
	}
	created := !dirExists(dataDir)
	err = raftnode.Seed(raftnode.SeedConfig{DataDir: dataDir, Shard: s.Shard, Members: members, ClusterID: newID, Index: s.Revision}, iter.Seq[kv.KeyValue](pairs))
	if err == nil && decodeErr != nil {
		// The file changed since it was checked.
		err = fmt.Errorf("read %s: %w", from, decodeErr)
	}
	if err != nil {
		if !errors.Is(err, raftnode.ErrNotEmpty) {
			removeSeeded(dataDir, created)
		}
		return backupSummary{}, 0, fmt.Errorf("restore into %s: %w", dataDir, err)
	}
	return summarize(from, s), newID, nil
}

// newClusterIDFor derives the id of a cluster restored from the backup
// with nonce onto members: every member restored from the same file with
// the same --cluster gets the same id, and a restore of another backup, or
// onto other members, another one.
func newClusterIDFor(nonce [16]byte, members []raftnode.Member) uint64 {
	h := sha256.New()
	h.Write([]byte("distkv-restore\x00"))
	h.Write(nonce[:])
	names := make([]string, 0, len(members))
	for _, m := range members {
		names = append(names, m.Name+"="+m.Peer)
	}
	sort.Strings(names)
	for _, n := range names {
		h.Write([]byte(n + "\x00"))
	}
	id := binary.BigEndian.Uint64(h.Sum(nil))
	if id == 0 {
		id = 1
	}
	return id
}

func dirExists(dir string) bool {
	_, err := os.Stat(dir)
	return err == nil
}

// removeSeeded removes what a failed Seed left in dataDir, which was empty
// or absent before it.
func removeSeeded(dataDir string, created bool) {
	if created {
		os.RemoveAll(dataDir)
		return
	}
	entries, _ := os.ReadDir(dataDir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dataDir, e.Name()))
	}
}
