package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/vfs"
)

func newEncryptionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "encryption", Short: "Manage the encryption at rest of a data directory"}
	var dataDir, keyFile, oldKeyFile string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new data key and wrap every data key under a (new) master key",
		Long: `Make a new data key for the data directory of a stopped node: new WAL frames
and snapshot files are encrypted under it, while those written before stay
readable under the older data keys, which are kept. Every data key is then
wrapped by the master key in --encryption-key-file; --old-encryption-key-file
is the master key that wraps them now (omit it to keep the master key and
rotate the data key alone). The keys file is replaced atomically. The node
must not be running: the command takes the data directory's lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || keyFile == "" {
				return errors.New("--data-dir and --encryption-key-file are required")
			}
			newKey, err := crypt.LoadMasterKey(keyFile)
			if err != nil {
				return err
			}
			oldKey := newKey
			if oldKeyFile != "" {
				if oldKey, err = crypt.LoadMasterKey(oldKeyFile); err != nil {
					return fmt.Errorf("--old-encryption-key-file: %w", err)
				}
			}
			if ok, err := crypt.HasKeys(vfs.Default, dataDir); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("data directory %s is not encrypted (it has no %s file): %w", dataDir, crypt.KeysFile, crypt.ErrNotEncrypted)
			}
			lock, err := vfs.Default.Lock(filepath.Join(dataDir, "LOCK"))
			if errors.Is(err, vfs.ErrLocked) {
				return fmt.Errorf("data directory %s is in use (stop its node first): %w", dataDir, err)
			}
			if err != nil {
				return err
			}
			defer lock.Close()
			c, err := crypt.Rotate(vfs.Default, dataDir, newKey, oldKey)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: new data key %08x of %d; data keys wrapped by the master key with fingerprint %s\n",
				dataDir, c.CurrentKeyID(), len(c.KeyIDs()), newKey.Fingerprint())
			return nil
		},
	}
	rotate.Flags().StringVar(&dataDir, "data-dir", "", "data directory of a stopped node (required)")
	rotate.Flags().StringVar(&keyFile, "encryption-key-file", "", "the master key to wrap the data keys with from now on (required)")
	rotate.Flags().StringVar(&oldKeyFile, "old-encryption-key-file", "", "the master key that wraps them now (default: --encryption-key-file)")
	cmd.AddCommand(rotate)
	return cmd
}

// openEncryption returns the Cipher of a node's data directory, or nil if it
// runs without encryption. keyFile is --encryption-key-file, oldKeyFile
// --old-encryption-key-file, hasState whether the directory holds data.
//
//   - No key file: the directory must not be encrypted (no keys file).
//   - A keys file wrapped by the key: its Cipher.
//   - A keys file wrapped by the old key: rotated (a new data key, every
//     data key wrapped by the key from now on), then its Cipher.
//   - No keys file: created, unless the directory holds data in the clear,
//     which is refused (encryption is turned on for a new data directory).
func openEncryption(dataDir, keyFile, oldKeyFile string, hasState bool, logger *slog.Logger) (*crypt.Cipher, error) {
	fs := vfs.Default
	encrypted, err := crypt.HasKeys(fs, dataDir)
	if err != nil {
		return nil, err
	}
	if keyFile == "" {
		if oldKeyFile != "" {
			return nil, errors.New("--old-encryption-key-file needs --encryption-key-file (the new key)")
		}
		if encrypted {
			return nil, fmt.Errorf("data directory %s is encrypted (it has a %s file): start with --encryption-key-file: %w",
				dataDir, crypt.KeysFile, crypt.ErrKeyRequired)
		}
		return nil, nil
	}
	key, err := crypt.LoadMasterKey(keyFile)
	if err != nil {
		return nil, err
	}
	warnIfShared(logger, keyFile, "encryption key file")
	var old *crypt.MasterKey
	if oldKeyFile != "" {
		k, err := crypt.LoadMasterKey(oldKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--old-encryption-key-file: %w", err)
		}
		old = &k
	}
	if !encrypted {
		if hasState {
			return nil, fmt.Errorf("data directory %s holds data that is not encrypted: encryption at rest is turned on for a new data directory "+
				"(remove this node, and add it back with --join, an empty data directory and --encryption-key-file): %w", dataDir, crypt.ErrNotEncrypted)
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		c, err := crypt.Create(fs, dataDir, key)
		if err != nil {
			return nil, err
		}
		logger.Info("encryption at rest: new data key", "data_dir", dataDir, "key_id", fmt.Sprintf("%08x", c.CurrentKeyID()), "master_key", key.Fingerprint().String())
		return c, nil
	}
	fp, err := crypt.FingerprintOf(fs, dataDir)
	if err != nil {
		return nil, err
	}
	if old != nil && fp != key.Fingerprint() && fp == old.Fingerprint() {
		c, err := crypt.Rotate(fs, dataDir, key, *old)
		if err != nil {
			return nil, err
		}
		logger.Info("encryption at rest: master key rotated, new data key", "data_dir", dataDir,
			"key_id", fmt.Sprintf("%08x", c.CurrentKeyID()), "data_keys", len(c.KeyIDs()), "master_key", key.Fingerprint().String())
		return c, nil
	}
	c, err := crypt.Load(fs, dataDir, key)
	if errors.Is(err, crypt.ErrWrongKey) {
		hint := "give the key this data directory was encrypted with"
		if old != nil {
			hint = "neither --encryption-key-file nor --old-encryption-key-file is the key this data directory's data keys are wrapped with"
		}
		return nil, fmt.Errorf("%w (%s)", err, hint)
	}
	return c, err
}

// withCipher gives the node cfg its Cipher (nil: none), which encrypts its
// WAL and snapshot files.
func withCipher(cfg *raftnode.Config, c *crypt.Cipher) error {
	cfg.Cipher = c
	return nil
}

// walCipher returns the Cipher for reading the WAL in walDir (a node's
// data-dir/wal) with keyFile, or nil without one.
func walCipher(walDir, keyFile string) (*crypt.Cipher, error) {
	if keyFile == "" {
		return nil, nil
	}
	key, err := crypt.LoadMasterKey(keyFile)
	if err != nil {
		return nil, err
	}
	return crypt.Load(vfs.Default, filepath.Dir(walDir), key)
}

// keyHint adds to an error of reading an encrypted WAL without a key what to
// do about it.
func keyHint(err error) error {
	if errors.Is(err, crypt.ErrKeyRequired) {
		return fmt.Errorf("%w (give --encryption-key-file)", err)
	}
	return err
}
