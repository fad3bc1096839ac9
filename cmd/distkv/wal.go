package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

func newWALCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "wal", Short: "Inspect a write-ahead log (read-only)"}
	var raftRecords bool
	var keyFile string
	dump := &cobra.Command{
		Use:   "dump DIR",
		Short: "Print the log's writes as JSON lines in the prototype's format",
		Long: `Print the writes in a WAL as JSON lines, one per write, in the format of the
Python prototype's wal.log:

  {"id": 14, "operation": "SET", "key": "key6", "value": "myvalue"}
  {"id": 15, "operation": "DELETE", "key": "key6", "value": null}

id is the write's revision (its Raft log index). A value written as a JSON
number, object, array, boolean or null is shown as that JSON value, a string
as a string. A write sent with request ids shows them (client_id, request_id)
last. DIR is a node's data directory or its wal/ directory. A conditional write shows its condition after the
prototype's fields; the log holds it whether or not the condition held.
--raft also prints Raft's own records (hard states,
membership changes, snapshot markers). An encrypted WAL needs
--encryption-key-file, the node's master key. Nothing is modified.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := walDir(args[0])
			c, err := walCipher(dir, keyFile)
			if err != nil {
				return err
			}
			return keyHint(dumpWAL(cmd.OutOrStdout(), dir, c, raftRecords))
		},
	}
	dump.Flags().BoolVar(&raftRecords, "raft", false, "also print Raft records")
	dump.Flags().StringVar(&keyFile, "encryption-key-file", "", "master key of an encrypted data directory (the node's --encryption-key-file)")
	verify := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check every frame of the log and report the first damage",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := walDir(args[0])
			c, err := walCipher(dir, keyFile)
			if err != nil {
				return err
			}
			rep, err := wal.VerifyEncrypted(vfs.Default, dir, c)
			err = keyHint(err)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: %d segments, %d frames, %d records, %d bytes checked\n",
				dir, rep.Segments, rep.Frames, rep.Records, rep.Bytes)
			if rep.TornSegment != "" {
				fmt.Fprintf(out, "torn final frame in %s at offset %d: %d bytes would be truncated on start (a crash mid-write; nothing acknowledged is lost)\n",
					rep.TornSegment, rep.TornOffset, rep.TornBytes)
			}
			if err != nil {
				fmt.Fprintf(out, "DAMAGED: %v\n", err)
				return &exitError{code: 2, err: err}
			}
			fmt.Fprintln(out, "OK")
			return nil
		},
	}
	verify.Flags().StringVar(&keyFile, "encryption-key-file", "", "master key of an encrypted data directory (the node's --encryption-key-file)")
	cmd.AddCommand(dump, verify)
	return cmd
}

// walDir accepts a data directory or the wal directory itself.
func walDir(dir string) string {
	if st, err := os.Stat(filepath.Join(dir, "wal")); err == nil && st.IsDir() {
		return filepath.Join(dir, "wal")
	}
	return dir
}

// pyString renders s as a JSON string the way the prototype's log showed it,
// except that non-ASCII text stays UTF-8 rather than \u escapes.
func pyString(s []byte) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(s))
	return string(bytes.TrimRight(buf.Bytes(), "\n"))
}

// pyValue renders a written value: a JSON value (kv.KindJSON) as the JSON
// text it is stored as, a string as pyString does.
func pyValue(v []byte, kind kv.ValueKind) string {
	if kind == kv.KindJSON {
		return string(v)
	}
	return pyString(v)
}

func dumpWAL(out io.Writer, dir string, c *crypt.Cipher, raftRecords bool) error {
	w := bufio.NewWriter(out)
	defer w.Flush()
	err := wal.ScanEncrypted(vfs.Default, dir, c, func(segment string, offset int64, r wal.Record) error {
		switch r.Type {
		case wal.RecordEntry:
			var e raftpb.Entry
			if err := e.Unmarshal(r.Data); err != nil {
				return fmt.Errorf("%s at offset %d: decode entry: %w", segment, offset, err)
			}
			if e.Type == raftpb.EntryNormal && len(e.Data) > 0 {
				_, stamp, enc, err := raftnode.DecodePayload(e.Data)
				if err != nil {
					return fmt.Errorf("%s at offset %d: entry %d: %w", segment, offset, e.Index, err)
				}
				cmd, err := kv.UnmarshalCommand(enc)
				if err != nil {
					return fmt.Errorf("%s at offset %d: entry %d: %w", segment, offset, e.Index, err)
				}
				// The id a write answered: its revision, the oracle's stamp
				// where the leader stamped it, else the entry's index.
				id := e.Index
				if stamp != 0 {
					id = stamp
				}
				switch cmd.Op {
				case kv.OpPut:
					fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"SET\", \"key\": %s, \"value\": %s%s%s}\n", id, pyString(cmd.Key), pyValue(cmd.Value, cmd.Kind), condFields(cmd.Cond), requestFields(cmd))
				case kv.OpDelete:
					fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"DELETE\", \"key\": %s, \"value\": null%s%s}\n", id, pyString(cmd.Key), condFields(cmd.Cond), requestFields(cmd))
				case kv.OpTxn:
					fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"TXN\"%s%s}\n", id, txnFields(cmd.Txn), requestFields(cmd))
				case kv.OpAuth:
					// The kind and name only: never a password hash or the token secret.
					fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"AUTH\", \"change\": %q, \"name\": %s}\n", id, cmd.Auth.Kind.String(), pyString([]byte(cmd.Auth.Name)))
				case kv.OpSplit:
					fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"SPLIT\", \"key\": %s, \"shard\": %d}\n", id, pyString(cmd.Key), cmd.Shard)
				case kv.OpCommit, kv.OpResolve:
					// The writes of a transaction over several ranges that
					// this range applies, at the transaction's revision (a
					// resolve without one aborts, and writes nothing).
					if cmd.Revision > 0 {
						fmt.Fprintf(w, "{\"id\": %d, \"operation\": \"TXN_%s\", \"transaction\": \"%x\", \"writes\": [%s]}\n",
							cmd.Revision, strings.ToUpper(cmd.Op.String()), cmd.Intent.ID, opsFields(cmd.Intent.Keys))
					}
				}
				return nil
			}
			if raftRecords {
				kind := "EMPTY"
				if e.Type != raftpb.EntryNormal {
					kind = e.Type.String()
				}
				fmt.Fprintf(w, "{\"id\": %d, \"operation\": %q, \"term\": %d, \"shard\": %d}\n", e.Index, kind, e.Term, r.Shard)
			}
		case wal.RecordHardState:
			if raftRecords {
				var hs raftpb.HardState
				if err := hs.Unmarshal(r.Data); err != nil {
					return fmt.Errorf("%s at offset %d: decode hard state: %w", segment, offset, err)
				}
				fmt.Fprintf(w, "{\"operation\": \"HARD_STATE\", \"term\": %d, \"vote\": %s, \"commit\": %d, \"shard\": %d}\n",
					hs.Term, strconv.Quote(strconv.FormatUint(hs.Vote, 16)), hs.Commit, r.Shard)
			}
		case wal.RecordSnapshot:
			if raftRecords {
				fmt.Fprintf(w, "{\"operation\": \"SNAPSHOT\", \"index\": %d, \"shard\": %d}\n", r.Index, r.Shard)
			}
		}
		return nil
	})
	return err
}

// condFields renders a write's condition after the prototype's fields: the log
// holds conditional writes whether or not their condition held when applied.
func condFields(c kv.Cond) string {
	var b strings.Builder
	if c.CreateOnly {
		b.WriteString(", \"create_only\": true")
	}
	if c.PrevVersion != nil {
		fmt.Fprintf(&b, ", \"prev_version\": %d", *c.PrevVersion)
	}
	if c.PrevRevision != nil {
		fmt.Fprintf(&b, ", \"prev_revision\": %d", *c.PrevRevision)
	}
	return b.String()
}

// requestFields renders the request ids of a write sent with them. The log
// holds every attempt that reached it; the state machine applied only the
// first (a later one with the same ids changed nothing).
func requestFields(cmd kv.Command) string {
	if cmd.Request.IsZero() {
		return ""
	}
	return fmt.Sprintf(", \"client_id\": %s, \"request_id\": %s", pyString(cmd.Request.Client), pyString(cmd.Request.Request))
}

// txnFields renders a transaction's compares and branches. Which branch ran
// depends on the state when it was applied, which the log does not hold.
func txnFields(t *kv.Txn) string {
	if t == nil {
		return ", \"compare\": [], \"success\": [], \"failure\": []"
	}
	var b strings.Builder
	b.WriteString(", \"compare\": [")
	for i, c := range t.Compares {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{\"key\": %s, \"target\": %q, \"op\": %q, ", pyString(c.Key), c.Target.String(), c.Op.String())
		switch c.Target {
		case kv.TargetValue:
			fmt.Fprintf(&b, "\"value\": %s}", pyString(c.Value))
		case kv.TargetExists:
			fmt.Fprintf(&b, "\"exists\": %t}", c.Exists)
		default:
			fmt.Fprintf(&b, "%q: %d}", c.Target.String(), c.Number)
		}
	}
	b.WriteString("]")
	for _, br := range []struct {
		name string
		ops  []kv.TxnOp
	}{{"success", t.Success}, {"failure", t.Failure}} {
		fmt.Fprintf(&b, ", %q: [%s]", br.name, opsFields(br.ops))
	}
	return b.String()
}

// opsFields renders a transaction's operations.
func opsFields(ops []kv.TxnOp) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		switch op.Type {
		case kv.TxnPut:
			fmt.Fprintf(&b, "{\"operation\": \"SET\", \"key\": %s, \"value\": %s}", pyString(op.Key), pyValue(op.Value, op.Kind))
		case kv.TxnDelete:
			fmt.Fprintf(&b, "{\"operation\": \"DELETE\", \"key\": %s, \"value\": null}", pyString(op.Key))
		default:
			fmt.Fprintf(&b, "{\"operation\": \"GET\", \"key\": %s}", pyString(op.Key))
		}
	}
	return b.String()
}
