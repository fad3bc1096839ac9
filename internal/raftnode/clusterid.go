package raftnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"strconv"

	"github.com/distkv/distkv/internal/vfs"
)

// The cluster id is created at random once, when a cluster is bootstrapped,
// and never changes. Every member keeps it in DATA/cluster-id, the peer
// handshake carries it (package transport refuses a peer of another cluster),
// and the log carries it too: in the bootstrap entries and in the membership
// of every snapshot, so that a member whose data directory names another
// cluster than its log stops instead of mixing the two. 0 means unknown: a
// data directory created before cluster ids has none, and such a node is
// refused by nobody.
const clusterIDFile = "cluster-id"

// clusterIDPrefix starts the file; the id follows as 16 hex digits and a
// newline, so an operator can read it with cat.
const clusterIDPrefix = "distkv cluster id "

// ErrClusterID reports a cluster-id file that cannot be read as one, or a
// log that names another cluster than the data directory.
var ErrClusterID = errors.New("cluster id")

// ReadClusterID returns the cluster id kept in dataDir, and false if there is
// none.
func ReadClusterID(fs vfs.FS, dataDir string) (uint64, bool, error) {
	path := filepath.Join(dataDir, clusterIDFile)
	f, err := fs.Open(path)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", path, err)
	}
	id, err := parseClusterID(b)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", path, err)
	}
	return id, true, nil
}

// parseClusterID decodes the contents of a cluster-id file.
func parseClusterID(b []byte) (uint64, error) {
	rest, ok := bytes.CutPrefix(b, []byte(clusterIDPrefix))
	if !ok || len(rest) != 17 || rest[16] != '\n' {
		return 0, fmt.Errorf("%w: not a cluster-id file (want %q, 16 hex digits and a newline)", ErrClusterID, clusterIDPrefix)
	}
	id, err := strconv.ParseUint(string(rest[:16]), 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: %q is not a non-zero 16-digit hex id", ErrClusterID, rest[:16])
	}
	return id, nil
}

func formatClusterIDFile(id uint64) []byte {
	return fmt.Appendf(nil, "%s%016x\n", clusterIDPrefix, id)
}

// writeClusterID keeps id in dataDir, durably (write, fsync, rename, fsync
// the directory).
func writeClusterID(fs vfs.FS, dataDir string, id uint64) error {
	return vfs.WriteFileAtomic(fs, filepath.Join(dataDir, clusterIDFile), formatClusterIDFile(id))
}

// checkLogClusterID compares a cluster id found in the log (s: 16 hex digits,
// or empty where the log has none) with the node's own.
func (n *Node) checkLogClusterID(where, s string) error {
	if s == "" || n.clusterID == 0 {
		return nil
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return fmt.Errorf("%w: %s names cluster %q, which is not an id", ErrClusterID, where, s)
	}
	if id != n.clusterID {
		return fmt.Errorf("%w: %s belongs to cluster %016x but %s says this node belongs to cluster %016x: the data directory mixes two clusters",
			ErrClusterID, where, id, filepath.Join(n.cfg.DataDir, clusterIDFile), n.clusterID)
	}
	return nil
}

// ClusterID returns the id of the cluster this node belongs to, 0 if its data
// directory predates cluster ids.
func (n *Node) ClusterID() uint64 { return n.clusterID }

// clusterIDString is the id as the log carries it: 16 hex digits, or empty.
func (n *Node) clusterIDString() string {
	if n.clusterID == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", n.clusterID)
}

// bootstrapMember is a member as the bootstrap entries of a new cluster
// carry it: with the cluster's id, which every member applying them checks
// against its own. (A later member change carries a plain Member.)
type bootstrapMember struct {
	Member
	ClusterID string `json:"cluster_id,omitempty"`
}

// checkConfChangeClusterID checks the cluster id a bootstrap entry carries
// (a later member change carries none).
func (n *Node) checkConfChangeClusterID(index uint64, ctx []byte) error {
	var b bootstrapMember
	if json.Unmarshal(ctx, &b) != nil {
		return nil // not a member record: nothing to compare
	}
	return n.checkLogClusterID(fmt.Sprintf("log entry %d", index), b.ClusterID)
}
