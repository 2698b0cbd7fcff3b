package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// CatalogPageSize is how many names the catalog filter asks distribution for at a time;
// it must not exceed the app's catalog.maxentries.
const CatalogPageSize = 1000

type catalogBody struct {
	Repositories []string `json:"repositories"`
}

// catalogHandler serves GET /v2/_catalog by paging through distribution's own catalog
// handler (so storage, auth and errors stay distribution's) and keeping only repositories
// the caller may pull. Pagination follows the spec: at most n names, and a Link header to
// the next page, whose cursor is the last name returned.
func (c *Controller) catalogHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n := CatalogPageSize
		if s := q.Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
				return
			}
			n = min(v, CatalogPageSize)
		}
		id, err := c.authenticate(r)
		if err != nil && (!errors.Is(err, errNoCredentials) || !c.cfg.AnonymousPull) {
			// Let distribution answer with its challenge.
			next.ServeHTTP(w, r)
			return
		}
		cursor := q.Get("last")
		var out []string
		more := false
		for {
			page, rec, hasNext := c.fetchCatalogPage(next, r, cursor)
			if rec != nil {
				rec.copyTo(w)
				return
			}
			for _, name := range page {
				ok, _, err := c.permits(r.Context(), id, name, ActionPull)
				if err != nil {
					c.log.Warn("An authorizer could not be asked", "user", id.User, "err", err)
					w.Header().Set("Retry-After", "10")
					writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", errUnavailableMessage)
					return
				}
				if ok {
					if len(out) == n {
						more = true
						break
					}
					out = append(out, name)
				}
			}
			if more || !hasNext || len(page) == 0 {
				break
			}
			cursor = page[len(page)-1]
		}
		if out == nil {
			out = []string{}
		}
		if more && len(out) > 0 {
			link := url.URL{Path: "/v2/_catalog", RawQuery: url.Values{"last": {out[len(out)-1]}, "n": {strconv.Itoa(n)}}.Encode()}
			w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", link.String()))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(catalogBody{Repositories: out})
	})
}

// fetchCatalogPage asks the wrapped handler for one page after cursor. On anything but
// 200 it returns the recorded response for the caller to pass on.
func (c *Controller) fetchCatalogPage(next http.Handler, r *http.Request, cursor string) ([]string, *recorder, bool) {
	inner := r.Clone(r.Context())
	v := url.Values{"n": {strconv.Itoa(CatalogPageSize)}}
	if cursor != "" {
		v.Set("last", cursor)
	}
	inner.URL.RawQuery = v.Encode()
	inner.RequestURI = inner.URL.RequestURI()
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	next.ServeHTTP(rec, inner)
	if rec.code != http.StatusOK {
		return nil, rec, false
	}
	var body catalogBody
	if err := json.Unmarshal(rec.body.Bytes(), &body); err != nil {
		rec.code = http.StatusInternalServerError
		return nil, rec, false
	}
	return body.Repositories, nil, rec.header.Get("Link") != ""
}

// recorder captures a response of the wrapped handler.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) { r.wrote = true; return r.body.Write(b) }

func (r *recorder) copyTo(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.code)
	_, _ = w.Write(r.body.Bytes())
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorBody{Errors: []ErrorEntry{{Code: errCode, Message: msg}}})
}
