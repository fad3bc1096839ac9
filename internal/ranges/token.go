package ranges

import (
	"encoding/base64"
	"fmt"
)

// tokenVersion is the first byte of a continue token. Version 1 is the
// format GET /keys has always used: the version byte, then the key after
// the last one returned (that key followed by a zero byte), base64url
// without padding. Tokens already handed to clients stay valid.
const tokenVersion = 1

// maxTokenKey bounds the key a token may carry, so a decoded token cannot
// make a scan allocate without limit.
const maxTokenKey = 1 << 16

// EncodeToken returns the continue token of a scan page whose last key was
// last. The token names a key, not a range: a scan resumed with it starts
// right after last in whatever range holds that key then, so it survives
// splits and moves of ranges.
func EncodeToken(last []byte) string {
	raw := make([]byte, 0, len(last)+2)
	raw = append(raw, tokenVersion)
	raw = append(raw, last...)
	raw = append(raw, 0)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// DecodeToken returns the key at which the scan of tok resumes: the
// smallest key after the last one returned. The error wraps ErrCorrupt and
// says what is wrong; it is the caller's to answer 422.
func DecodeToken(tok string) (resume []byte, err error) {
	if len(tok) > base64.RawURLEncoding.EncodedLen(maxTokenKey+2) {
		return nil, fmt.Errorf("%w: continue token of %d characters is longer than any this API returns", ErrCorrupt, len(tok))
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: continue token is not unpadded base64url: %v", ErrCorrupt, err)
	case base64.RawURLEncoding.EncodeToString(raw) != tok:
		// Unused low bits in the last character, or line breaks, which
		// the decoder skips: another spelling of a token, not one this
		// API returns.
		return nil, fmt.Errorf("%w: continue token is not in the form this API returns", ErrCorrupt)
	case len(raw) < 2:
		return nil, fmt.Errorf("%w: continue token is too short", ErrCorrupt)
	case raw[0] != tokenVersion:
		return nil, fmt.Errorf("%w: continue token version %d, want %d", ErrCorrupt, raw[0], tokenVersion)
	case raw[len(raw)-1] != 0:
		return nil, fmt.Errorf("%w: continue token does not name a key after a returned one", ErrCorrupt)
	}
	return raw[1:], nil
}
