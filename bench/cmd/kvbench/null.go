package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// serveNull runs a do-nothing HTTP server that answers distkv's response
// shapes at once: PUT/DELETE /key/{k} -> {"status":"ok","id":N} and
// GET /key/{k} -> {"key":k,"value":...,"version":1,"revision":N}. It stores
// nothing, so it measures only the HTTP stack and the load generator.
func serveNull(args []string) error {
	fs := flag.NewFlagSet("serve-null", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8100", "listen address")
	valueSize := fs.Int("value-size", 256, "size of the value returned by GET")
	fs.Parse(args)

	fmt.Fprintf(os.Stderr, "kvbench serve-null: listening on %s\n", *addr)
	return http.ListenAndServe(*addr, nullHandler(*valueSize))
}

// nullHandler is serve-null's handler; GETs return a value of valueSize bytes.
func nullHandler(valueSize int) http.Handler {
	value := string(makeValue(valueSize, 1))
	var rev atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/key/", func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/key/")
		io.Copy(io.Discard, r.Body) // read the request as a real server would
		n := rev.Add(1)
		w.Header().Set("Content-Type", "application/json")
		var b []byte
		switch r.Method {
		case http.MethodPut, http.MethodPost, http.MethodDelete:
			b = append(b, `{"status":"ok","id":`...)
			b = strconv.AppendInt(b, n, 10)
			b = append(b, "}\n"...)
		case http.MethodGet:
			b = append(b, `{"key":`...)
			b = strconv.AppendQuote(b, key)
			b = append(b, `,"value":"`...)
			b = append(b, value...)
			b = append(b, `","version":1,"revision":`...)
			b = strconv.AppendInt(b, n, 10)
			b = append(b, "}\n"...)
		default:
			http.Error(w, `{"detail":"method not allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}
