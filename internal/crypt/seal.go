package crypt

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// Sizes of a sealed frame's envelope (see the package comment).
const (
	saltSize = 16
	// PrefixSize is the bytes before the ciphertext: key id, salt, counter.
	PrefixSize = 4 + saltSize + 8
	// TagSize is the GCM tag after the ciphertext.
	TagSize = 16
	// Overhead is what sealing adds to a plaintext.
	Overhead = PrefixSize + TagSize
)

// subkey derives the AEAD of one session: HKDF-SHA256 of the data key with
// the session's salt, for domain.
func subkey(dk *[KeySize]byte, salt []byte, domain string) cipher.AEAD {
	k, err := hkdf.Key(sha256.New, dk[:], salt, "distkv "+domain, KeySize)
	if err != nil {
		panic(err) // only for an output longer than 255 hashes
	}
	return newGCM(k)
}

func counterNonce(n uint64) []byte {
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], n)
	return nonce[:]
}

// Sealer seals the frames of one writing session under the current data key,
// a subkey of its own (random salt) and nonces counting from zero. Not safe
// for concurrent use.
type Sealer struct {
	keyID uint32
	salt  [saltSize]byte
	aead  cipher.AEAD
	next  uint64
}

// NewSealer starts a session for domain (each use its own: "wal", "snap").
func (c *Cipher) NewSealer(domain string) (*Sealer, error) {
	s := &Sealer{keyID: c.current}
	if _, err := rand.Read(s.salt[:]); err != nil {
		return nil, fmt.Errorf("new sealer: %w", err)
	}
	s.aead = subkey(c.keys[c.current], s.salt[:], domain)
	return s, nil
}

// SealInPlace seals b[PrefixSize:], the plaintext, in place: it writes the
// envelope prefix into b[:PrefixSize], encrypts the rest, and returns b
// extended by TagSize (in b's array if its capacity allows). ad is
// authenticated, not stored.
func (s *Sealer) SealInPlace(b, ad []byte) []byte {
	if len(b) < PrefixSize {
		panic("crypt: SealInPlace: no room for the prefix")
	}
	if s.next == math.MaxUint64 {
		// 2^64 frames in one session: unreachable, but a repeated nonce
		// would be fatal, so refuse rather than wrap.
		panic("crypt: session nonce space exhausted")
	}
	n := s.next
	s.next++
	binary.LittleEndian.PutUint32(b, s.keyID)
	copy(b[4:], s.salt[:])
	binary.LittleEndian.PutUint64(b[4+saltSize:], n)
	if cap(b)-len(b) < TagSize {
		b = append(make([]byte, 0, len(b)+TagSize), b...)
	}
	pt := b[PrefixSize:]
	out := s.aead.Seal(pt[:0], counterNonce(n), pt, ad) // in place: the capacity suffices
	return b[:PrefixSize+len(out)]
}

// Opener opens frames sealed by any Sealer of its Cipher for its domain. It
// remembers the subkey of the last session it saw, since a log's frames
// come in runs of one session. Not safe for concurrent use.
type Opener struct {
	c      *Cipher
	domain string
	keyID  uint32
	salt   [saltSize]byte
	aead   cipher.AEAD
}

// NewOpener returns an Opener for domain.
func (c *Cipher) NewOpener(domain string) *Opener { return &Opener{c: c, domain: domain} }

// OpenInPlace authenticates and decrypts the sealed frame b with additional
// data ad, in place, and returns the plaintext (aliasing b). A frame shorter
// than Overhead is ErrCorrupt; a key id the keys file lacks, ErrWrongKey; a
// failed authentication, ErrAuth.
func (o *Opener) OpenInPlace(b, ad []byte) ([]byte, error) {
	if len(b) < Overhead {
		return nil, fmt.Errorf("%w: sealed frame of %d bytes, shorter than its %d bytes of overhead", ErrCorrupt, len(b), Overhead)
	}
	id := binary.LittleEndian.Uint32(b)
	salt := b[4 : 4+saltSize]
	if o.aead == nil || id != o.keyID || string(salt) != string(o.salt[:]) {
		dk, ok := o.c.keys[id]
		if !ok {
			return nil, fmt.Errorf("%w: sealed under data key %d, which the keys file does not hold (it holds %v)", ErrWrongKey, id, o.c.KeyIDs())
		}
		o.aead = subkey(dk, salt, o.domain)
		o.keyID = id
		copy(o.salt[:], salt)
	}
	n := binary.LittleEndian.Uint64(b[4+saltSize:])
	ct := b[PrefixSize:]
	pt, err := o.aead.Open(ct[:0], counterNonce(n), ct, ad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// KeyID returns the data key id a sealed frame names, or false if b is too
// short to be one.
func KeyID(b []byte) (uint32, bool) {
	if len(b) < Overhead {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}
