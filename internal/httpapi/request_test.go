package httpapi

import (
	"strings"
	"testing"
)

// TestPlainPutValue checks the fast path of parsePutBody: the bodies it takes
// decode to what encoding/json makes of them, the usual body is among them,
// and every body it must leave to the general path (escapes, other fields,
// non-ASCII, trailing bytes, malformed JSON) is left there.
func TestPlainPutValue(t *testing.T) {
	taken := []string{
		`{"value":"hello"}`,
		` { "value" : "a b/c:{}[],x" } `,
		"\t{\n\"value\":\"\"\r\n}\n",
		`{"value":"` + strings.Repeat("v", 256) + `"}`,
	}
	for _, body := range taken {
		i := skipSpace([]byte(body), 0)
		v, ok := plainPutValue([]byte(body), i)
		if !ok {
			t.Errorf("%q: not taken by the fast path", body)
			continue
		}
		ref := refDecodePut([]byte(body))
		if !ref.ok || string(v) != string(ref.value) {
			t.Errorf("%q: fast path gives %q, encoding/json %q (ok %v)", body, v, ref.value, ref.ok)
		}
		p, aerr := parsePutBody([]byte(body))
		if aerr != nil || string(p.value) != string(ref.value) || p.conds != (conds{}) {
			t.Errorf("%q: parsePutBody = %q, %+v, %v", body, p.value, p.conds, aerr)
		}
	}
	left := []string{
		`{"value":"a\"b"}`,
		`{"value":"a\nb"}`,
		"{\"value\":\"a\tb\"}",
		"{\"value\":\"\xc3\xa9\"}",
		"{\"value\":\"\xff\"}",
		`{"value":"v","create_only":true}`,
		`{"value":"v","value":"w"}`,
		`{"value":"v"}x`,
		`{"value":"v"`,
		`{"value":"v`,
		`{"value":1}`,
		`{"valu":"v"}`,
		`{"value" "v"}`,
		`{"value":"v"}}`,
		`["value","v"]`,
	}
	for _, body := range left {
		i := skipSpace([]byte(body), 0)
		if v, ok := plainPutValue([]byte(body), i); ok {
			t.Errorf("%q: taken by the fast path as %q; it is not the plain form", body, v)
		}
	}
}
