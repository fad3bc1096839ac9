package snap

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/distkv/distkv/internal/crypt"
)

// cryptDomain keeps the snapshot files' subkeys apart from other users of a
// Cipher.
const cryptDomain = "snap"

// An encrypted snapshot file is a sealed stream (crypt.Cipher.NewWriter)
// whose plaintext is the snapshot stream Encode writes: the header, pairs and
// trailer with their own checksums inside, every byte authenticated by the
// seal's chunks. A file in the clear starts with magic, a sealed one with
// crypt.StreamMagic, so a store tells them apart by their first bytes.

// nopCloser makes a writer a WriteCloser for a store without a Cipher.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// sealer returns the writer a snapshot stream is written to for a file that
// w writes: sealing if the store has a Cipher. Its Close ends the sealed
// stream (it does not close w).
func (s *Store) sealer(w io.Writer) (io.WriteCloser, error) {
	if s.cipher == nil {
		return nopCloser{w}, nil
	}
	return s.cipher.NewWriter(w, cryptDomain)
}

// opener returns the plain snapshot stream of the file f reads. A file
// sealed when the store has no Cipher is refused (crypt.ErrKeyRequired), as
// is a file in the clear when it has one (crypt.ErrNotEncrypted), and a
// file of a data key the Cipher lacks (crypt.ErrWrongKey): none of them is
// ErrCorrupt, so Load does not skip them for an older file. A sealed file
// that is malformed, truncated or fails authentication gives errors wrapping
// ErrCorrupt, from here or from reading.
func (s *Store) opener(f io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(f, 64<<10)
	head, err := br.Peek(len(magic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	sealed := crypt.IsStream(head)
	switch {
	case s.cipher == nil && sealed:
		return nil, fmt.Errorf("the file is encrypted: %w", crypt.ErrKeyRequired)
	case s.cipher == nil:
		return br, nil
	case !sealed && string(head) == magic:
		return nil, fmt.Errorf("the file is not encrypted, but the store has an encryption key: %w", crypt.ErrNotEncrypted)
	}
	r, err := s.cipher.NewReader(br, cryptDomain)
	if err != nil {
		return nil, sealErr(err)
	}
	return sealedReader{r}, nil
}

// sealErr marks a damaged sealed stream as ErrCorrupt; other errors (a key
// the Cipher lacks, a failed read) stay as they are.
func sealErr(err error) error {
	if errors.Is(err, crypt.ErrCorrupt) || errors.Is(err, crypt.ErrAuth) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// sealedReader reads a sealed stream, reporting its damage as ErrCorrupt.
type sealedReader struct{ r io.Reader }

func (s sealedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = sealErr(err)
	}
	return n, err
}
