package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsPath is where the registry is served.
const metricsPath = "/metrics"

// httpMetrics are the series of the HTTP requests, observed once per request.
type httpMetrics struct {
	route    func(*http.Request) string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// cache maps a seriesKey to its *reqSeries: one lookup per request
	// instead of a hash of the label values by each vector.
	cache sync.Map
}

type seriesKey struct {
	route, method string
	code          int
}

// reqSeries are the series one kind of request is counted in.
type reqSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

func (s *reqSeries) observe(d time.Duration) {
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

func (h *httpMetrics) series(route, method string, code int) *reqSeries {
	method = methodLabel(method)
	k := seriesKey{route, method, code}
	if s, ok := h.cache.Load(k); ok {
		return s.(*reqSeries)
	}
	s := &reqSeries{
		count:    h.requests.WithLabelValues(route, method, codeLabel(code)),
		duration: h.duration.WithLabelValues(route, method),
	}
	v, _ := h.cache.LoadOrStore(k, s)
	return v.(*reqSeries)
}

func newHTTPMetrics(route func(*http.Request) string) *httpMetrics {
	return &httpMetrics{
		route: route,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distkv_http_requests_total",
			Help: "HTTP requests answered, by route (path template), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "distkv_http_request_duration_seconds",
			Help: "Time from a request's headers read to its handler's return, by route (path template) and method.",
			// From a stale read's 100 us to the default request timeout (5 s) and past it.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
				0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
}

// Handler returns the node's HTTP handler: GET /metrics serves the
// registry, every other request goes to api; both are counted and timed.
// /metrics is answered here, before api, so the API's own rules (its 404
// for an unknown path, its 422 for an unknown query parameter) do not
// apply to it.
func (m *Metrics) Handler(api http.Handler) http.Handler {
	scrape := promhttp.HandlerFor(m.cfg.Registry, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{m.cfg},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.cfg.Registry, // counts its own errors
	})
	h := m.http
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusWriter{ResponseWriter: w}
		var route string
		if r.URL.Path == metricsPath {
			route = metricsPath
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				scrape.ServeHTTP(&sw, r)
			} else {
				sw.Header().Set("Allow", "GET, HEAD")
				http.Error(&sw, "method not allowed", http.StatusMethodNotAllowed)
			}
		} else {
			route = h.route(r)
			api.ServeHTTP(&sw, r)
		}
		h.series(route, r.Method, sw.status()).observe(time.Since(start))
	})
}

// statusWriter remembers the status code of the response it passes on.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx are interim responses
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (flush,
// deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the code sent; a handler that wrote nothing sent 200.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// methodLabel bounds the method label to the standard methods: a client
// may send any token as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return m
	}
	return "other"
}

// codeLabel is strconv.Itoa without an allocation for the usual codes.
func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 400:
		return "400"
	case 404:
		return "404"
	case 405:
		return "405"
	case 409:
		return "409"
	case 412:
		return "412"
	case 422:
		return "422"
	case 500:
		return "500"
	case 501:
		return "501"
	case 503:
		return "503"
	case 507:
		return "507"
	}
	return strconv.Itoa(code)
}

// slogPrintln is promhttp's error log on the configured logger.
type slogPrintln struct{ cfg Config }

func (l slogPrintln) Println(v ...any) {
	l.cfg.Logger.Warn("metrics: scrape", "err", v)
}
