package server

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"

	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// contentRange is the only Content-Range form the distribution spec defines for a chunk:
// `<start>-<end>`, inclusive, in bytes.
var contentRange = regexp.MustCompile(`^\d{1,19}-\d{1,19}$`)

// validContentRange: the form, and both ends fit an int64 (distribution's parser answers
// an overflow with a 500).
func validContentRange(cr string) bool {
	if !contentRange.MatchString(cr) {
		return false
	}
	a, b, _ := strings.Cut(cr, "-")
	_, errA := strconv.ParseInt(a, 10, 64)
	_, errB := strconv.ParseInt(b, 10, 64)
	return errA == nil && errB == nil
}

// refuseMalformed answers requests distribution would fail with a 500 with the 4xx the
// distribution spec gives them, before they reach it: a repository name over the spec's
// 255 characters (NAME_INVALID), a chunk whose Content-Range is not `<start>-<end>` (416,
// as for a chunk out of order) or whose Content-Type is not application/octet-stream (400
// BLOB_UPLOAD_INVALID). TestHostileRequestsGet4xx and FuzzRequests hold the
// cases.
func refuseMalformed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if len(rt.Name) > reference.RepositoryNameTotalLengthMax {
			writeOCIError(w, http.StatusBadRequest, "NAME_INVALID", "repository name must not be more than 255 characters")
			return
		}
		if rt.Kind == route.BlobUploadChunk && (r.Method == http.MethodPatch || r.Method == http.MethodPut) {
			if cr := r.Header.Get("Content-Range"); cr != "" && !validContentRange(cr) {
				writeOCIError(w, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID", "Content-Range must be <start>-<end>")
				return
			}
		}
		if rt.Kind == route.BlobUploadChunk && r.Method == http.MethodPatch {
			if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/octet-stream" {
				writeOCIError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "a chunk's Content-Type must be application/octet-stream")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
