package httpapi

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/distkv/distkv/internal/kv"
)

// The small JSON toolkit of the hot path. Responses are built by hand because
// they are tiny and fixed in shape; request bodies are checked with json.Valid
// and then walked by the functions below, which may therefore assume
// well-formed input. Both directions are fuzzed against encoding/json.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like Python's
// json.dumps(ensure_ascii=False), which the prototype used, it escapes only '"',
// '\\' and control characters and writes other characters as raw UTF-8, so the
// prototype's responses are reproduced byte for byte. Each byte that is not
// part of valid UTF-8 becomes \ufffd, as encoding/json does.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStr is appendString for a Go string (error messages; not the hot path).
func appendStr(dst []byte, s string) []byte {
	return appendString(dst, []byte(s))
}

// isSpace reports JSON whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the well-formed JSON string that
// starts at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the well-formed JSON value that starts
// at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	// A number, true, false or null: it ends at a delimiter.
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// kindOf names the JSON type of the well-formed value raw, for error messages.
func kindOf(raw []byte) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// unquote decodes the well-formed JSON string token q (quotes included) as
// encoding/json does: invalid UTF-8 bytes and unpaired surrogate escapes become
// U+FFFD. When nothing needs decoding the result aliases q.
func unquote(q []byte) []byte {
	s := q[1 : len(q)-1]
	plain := true
	for _, c := range s {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain || (bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s)) {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			e := s[i+1]
			i += 2
			switch e {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(s[i:])
				i += 4
				if utf16.IsSurrogate(r) {
					// A valid pair is consumed whole; otherwise only the first
					// half is replaced and the next escape stands on its own.
					pair := utf8.RuneError
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						pair = utf16.DecodeRune(r, hex4(s[i+2:]))
					}
					if pair != utf8.RuneError {
						i += 6
					}
					r = pair
				}
				out = utf8.AppendRune(out, r)
			default: // '"', '\\', '/'
				out = append(out, e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r)
			i += size
		}
	}
	return out
}

// hex4 decodes four hex digits; -1 if they are not.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		v, ok := unhex(c)
		if !ok {
			return -1
		}
		r = r<<4 | rune(v)
	}
	return r
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// maxValueDepth bounds the nesting of a JSON value: a value nested deeper
// (arrays and objects within one another) is refused with 422. The bound
// keeps every reader of a value, here and in clients, clear of deep
// recursion; no value of the prototype's users comes near it.
const maxValueDepth = 64

// errTooDeep is returned by appendCompact for a value nested deeper than
// maxValueDepth.
type errTooDeep struct{ depth int }

// appendCompact appends the well-formed JSON value raw in the form distkv
// stores and answers: without whitespace between tokens, each string
// (object keys too) re-encoded as appendString writes strings (so escapes
// and invalid UTF-8 come out as in every other answer), and numbers, true,
// false and null exactly as sent: 1.50 stays 1.50, 1e3 stays 1e3, and an
// integer of any length keeps every digit. Object members keep their order,
// repeated names included. It fails with errTooDeep beyond maxValueDepth
// levels of nesting.
func appendCompact(dst, raw []byte) ([]byte, *errTooDeep) {
	depth := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case isSpace(c):
			i++
		case c == '"':
			end := skipString(raw, i)
			dst = appendString(dst, unquote(raw[i:end]))
			i = end
		case c == '{' || c == '[':
			depth++
			if depth > maxValueDepth {
				return dst, &errTooDeep{depth: depth}
			}
			dst = append(dst, c)
			i++
		case c == '}' || c == ']':
			depth--
			dst = append(dst, c)
			i++
		case c == ',' || c == ':':
			dst = append(dst, c)
			i++
		default:
			// A number, true, false or null: copied up to its delimiter.
			end := skipValue(raw, i)
			dst = append(dst, raw[i:end]...)
			i = end
		}
	}
	return dst, nil
}

// appendValue appends a stored value as JSON: a byte string as a JSON
// string, a JSON value (kv.KindJSON) as the text it is stored as.
func appendValue(dst, value []byte, kind kv.ValueKind) []byte {
	if kind == kv.KindJSON {
		return append(dst, value...)
	}
	return appendString(dst, value)
}
