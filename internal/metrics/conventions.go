package metrics

import (
	"fmt"
	"regexp"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// CheckConventions returns what, in families, breaks the naming rules of
// distkv's series (the Prometheus conventions): the prefix distkv_,
// snake_case, _total at the end of every counter's name and of no other's,
// and the unit as the suffix (before _total) in base units: _seconds for
// durations, _bytes for sizes, which a histogram's name must end in. Empty
// when all is well.
func CheckConventions(families []*dto.MetricFamily) []string {
	// Lower-case words joined by underscores.
	snakeCase := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var bad []string
	for _, mf := range families {
		name, typ := mf.GetName(), mf.GetType()
		complain := func(format string, args ...any) {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", name, strings.ToLower(typ.String()), fmt.Sprintf(format, args...)))
		}
		if !strings.HasPrefix(name, "distkv_") {
			complain("no distkv_ prefix")
		}
		if !snakeCase.MatchString(name) {
			complain("not snake_case")
		}
		total := strings.HasSuffix(name, "_total")
		switch {
		case typ == dto.MetricType_COUNTER && !total:
			complain("a counter's name must end in _total")
		case typ != dto.MetricType_COUNTER && total:
			complain("only a counter's name may end in _total")
		}
		base := strings.TrimSuffix(name, "_total")
		words := strings.Split(base, "_")
		last := words[len(words)-1]
		if typ == dto.MetricType_HISTOGRAM && last != "seconds" && last != "bytes" {
			complain("a histogram's name must end in its unit, _seconds or _bytes")
		}
		for i, w := range words {
			switch w {
			case "seconds", "bytes":
				if i != len(words)-1 {
					complain("the unit %s must be the last word (before _total)", w)
				}
			case "duration", "latency", "time", "size":
				if last != "seconds" && last != "bytes" {
					complain("%q measures something: end the name in its unit, _seconds or _bytes", w)
				}
			case "milliseconds", "microseconds", "nanoseconds", "ms", "us", "ns", "minutes", "hours",
				"kb", "mb", "gb", "kib", "mib", "gib", "kilobytes", "megabytes", "bits", "percent":
				complain("%q is not a base unit: use seconds, bytes or a ratio", w)
			}
		}
	}
	return bad
}
