package ranges

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
)

// A continue token names where a scan resumes, and the revision it reads
// at, base64url without padding:
//
//	version 1   1 | key | 0                       (no revision: read as today)
//	version 2   2 | revision (uvarint, > 0) | key | 0
//
// key | 0 is the smallest key after the last one returned. A token names a
// key, not a range: a scan resumed with it starts right after the last key
// in whatever range holds it then, so it survives splits and moves of
// ranges. Version 1 tokens, which GET /keys returned before scans read at a
// revision, stay valid.
const (
	tokenVersion    = 1
	tokenVersionRev = 2
)

// maxTokenKey bounds the key a token may carry, so a decoded token cannot
// make a scan allocate without limit.
const maxTokenKey = 1 << 16

// EncodeToken returns the continue token of a scan page whose last key was
// last, read at revision rev (0: at no fixed revision).
func EncodeToken(last []byte, rev int64) string {
	raw := make([]byte, 0, len(last)+2+binary.MaxVarintLen64)
	if rev > 0 {
		raw = binary.AppendUvarint(append(raw, tokenVersionRev), uint64(rev))
	} else {
		raw = append(raw, tokenVersion)
	}
	raw = append(raw, last...)
	raw = append(raw, 0)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// DecodeToken returns the key at which the scan of tok resumes (the
// smallest key after the last one returned) and the revision it reads at
// (0 for a version 1 token). The error wraps ErrCorrupt and says what is
// wrong; it is the caller's to answer 422.
func DecodeToken(tok string) (resume []byte, rev int64, err error) {
	if len(tok) > base64.RawURLEncoding.EncodedLen(maxTokenKey+2+binary.MaxVarintLen64) {
		return nil, 0, fmt.Errorf("%w: continue token of %d characters is longer than any this API returns", ErrCorrupt, len(tok))
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("%w: continue token is not unpadded base64url: %v", ErrCorrupt, err)
	case base64.RawURLEncoding.EncodeToString(raw) != tok:
		// Unused low bits in the last character, or line breaks, which
		// the decoder skips: another spelling of a token, not one this
		// API returns.
		return nil, 0, fmt.Errorf("%w: continue token is not in the form this API returns", ErrCorrupt)
	case len(raw) < 2:
		return nil, 0, fmt.Errorf("%w: continue token is too short", ErrCorrupt)
	}
	version, rest := raw[0], raw[1:]
	switch version {
	case tokenVersion:
	case tokenVersionRev:
		v, n := binary.Uvarint(rest)
		if n <= 0 || v == 0 || v > math.MaxInt64 || n != len(binary.AppendUvarint(nil, v)) {
			return nil, 0, fmt.Errorf("%w: continue token has no valid revision", ErrCorrupt)
		}
		rev, rest = int64(v), rest[n:]
	default:
		return nil, 0, fmt.Errorf("%w: continue token version %d, want %d or %d", ErrCorrupt, version, tokenVersion, tokenVersionRev)
	}
	if len(rest) == 0 || rest[len(rest)-1] != 0 {
		return nil, 0, fmt.Errorf("%w: continue token does not name a key after a returned one", ErrCorrupt)
	}
	if len(rest)-1 > maxTokenKey {
		return nil, 0, fmt.Errorf("%w: continue token names a key of %d bytes", ErrCorrupt, len(rest)-1)
	}
	return rest, rev, nil
}
