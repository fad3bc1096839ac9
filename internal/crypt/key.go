package crypt

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// KeySize is the size of master and data keys: AES-256.
const KeySize = 32

// Errors callers branch on.
var (
	// ErrKeyRequired: the data is encrypted and no key was given.
	ErrKeyRequired = errors.New("the data is encrypted and no encryption key was given")
	// ErrWrongKey: the key given is not the one the data was encrypted with
	// (or the data names a data key the keys file does not hold).
	ErrWrongKey = errors.New("wrong encryption key")
	// ErrNotEncrypted: a key was given but the data is not encrypted.
	ErrNotEncrypted = errors.New("the data is not encrypted")
	// ErrAuth: a sealed frame or chunk failed authentication: it was altered
	// or damaged after it was written.
	ErrAuth = errors.New("encrypted data failed authentication (altered or damaged)")
	// ErrCorrupt: a keys file, a sealed frame or a stream is malformed.
	ErrCorrupt = errors.New("malformed encrypted data")
)

// MasterKey is the operator's key, which wraps the data keys.
type MasterKey struct {
	k [KeySize]byte
}

// maxKeyFile bounds what LoadMasterKey reads: a key file is a few dozen bytes.
const maxKeyFile = 1024

// ParseMasterKey accepts the contents of a key file in exactly two encodings:
// 32 raw bytes, or 64 hexadecimal digits (either case) optionally surrounded
// by white space (a trailing newline, as `openssl rand -hex 32 > file` writes).
// Anything else, and a key of all zero bytes, is refused with a message that
// says what was found.
func ParseMasterKey(b []byte) (MasterKey, error) {
	var k MasterKey
	switch {
	case len(b) == KeySize:
		copy(k.k[:], b)
	default:
		t := bytes.TrimSpace(b)
		if len(t) != 2*KeySize {
			return k, fmt.Errorf("want 32 raw bytes or 64 hex digits, found %d bytes (%d after trimming white space)", len(b), len(t))
		}
		if _, err := hex.Decode(k.k[:], t); err != nil {
			// Not the decoder's message: it would quote a character of the key.
			return MasterKey{}, errors.New("64 characters, but not all of them hex digits")
		}
	}
	if k.k == [KeySize]byte{} {
		return MasterKey{}, errors.New("the key is all zero bytes: not a key")
	}
	return k, nil
}

// LoadMasterKey reads and parses the key file at path (see ParseMasterKey).
// Errors name the file.
func LoadMasterKey(path string) (MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("encryption key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return MasterKey{}, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return MasterKey{}, fmt.Errorf("encryption key file %s: more than %d bytes: want 32 raw bytes or 64 hex digits", path, maxKeyFile)
	}
	k, err := ParseMasterKey(b)
	if err != nil {
		return MasterKey{}, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	return k, nil
}

// Fingerprint identifies the key without revealing it: the first 8 bytes of
// HMAC-SHA256 under the key of a fixed string. It is stored in the keys file
// and shown in error messages.
func (k MasterKey) Fingerprint() Fingerprint {
	m := hmac.New(sha256.New, k.k[:])
	m.Write([]byte("distkv master key fingerprint"))
	var f Fingerprint
	copy(f[:], m.Sum(nil))
	return f
}

// Equal reports whether k and o are the same key, in constant time.
func (k MasterKey) Equal(o MasterKey) bool { return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1 }

// Fingerprint is a master key's identifier; see MasterKey.Fingerprint.
type Fingerprint [8]byte

func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }
