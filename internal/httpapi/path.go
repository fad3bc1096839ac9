package httpapi

import "net/url"

// escapedPath returns the request path as the client sent it, so that the
// distinction between "/" and "%2F" survives. net/http keeps the client's form
// in URL.RawPath whenever it differs from the default encoding of URL.Path;
// URL.EscapedPath ignores RawPath when it holds characters that need no
// escaping by the URL rules (raw UTF-8, for instance), so RawPath is preferred
// whenever it decodes to Path.
func escapedPath(u *url.URL) string {
	if u.RawPath != "" && decodesTo(u.RawPath, u.Path) {
		return u.RawPath
	}
	return u.EscapedPath()
}

// decodesTo reports whether percent-decoding raw gives exactly path.
func decodesTo(raw, path string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return false
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return false
			}
			c = hi<<4 | lo
			i += 2
		}
		if j >= len(path) || path[j] != c {
			return false
		}
		j++
	}
	return j == len(path)
}

// unescapeKey percent-decodes the escaped path segment s into a new slice. Every
// other byte, '+' and '/' included, stands for itself. It reports false for a
// '%' not followed by two hex digits.
func unescapeKey(s string) ([]byte, bool) {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) {
				return nil, false
			}
			if _, ok := unhex(s[i+1]); !ok {
				return nil, false
			}
			if _, ok := unhex(s[i+2]); !ok {
				return nil, false
			}
			n -= 2
			i += 2
		}
	}
	b := make([]byte, 0, n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			hi, _ := unhex(s[i+1])
			lo, _ := unhex(s[i+2])
			c = hi<<4 | lo
			i += 2
		}
		b = append(b, c)
	}
	return b, true
}
