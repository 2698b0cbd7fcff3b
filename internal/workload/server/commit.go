package server

import (
	"net/http"
	"slices"
)

// commitWriter holds back a success answer of distribution until a bookkeeping step of
// Dockyard's has been done: when the status is one of codes, onSuccess runs first (it may
// edit the headers); if it fails, the client gets 503 UNAVAILABLE with failMessage instead
// and retries (every such request — manifest PUT, upload commit, mount — is idempotent),
// so an acknowledged push never lacks its bookkeeping.
type commitWriter struct {
	http.ResponseWriter
	codes       []int
	onSuccess   func(h http.Header) error
	failMessage string
	wrote       bool
	failed      bool
}

func (w *commitWriter) WriteHeader(code int) {
	if w.wrote || !slices.Contains(w.codes, code) {
		w.wrote = true
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	if err := w.onSuccess(w.Header()); err != nil {
		w.failed = true
		h := w.Header()
		h.Del("Location")
		h.Del("Docker-Content-Digest")
		h.Del("Content-Length")
		writeOCIError(w.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE", w.failMessage)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *commitWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *commitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
