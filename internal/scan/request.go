package scan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RequestPath is where a Service takes scans asked for by people (the Registry's
// registry.dockyard.dev/scan-now annotation, forwarded by the operator).
const RequestPath = "/v1/request"

// Bounds of a scan request.
const (
	// MaxRequestReferences bounds the references of one request.
	MaxRequestReferences = 50
	// maxRequestTags bounds the tags of one repository named without a tag.
	maxRequestTags = 200
	// requestTimeout bounds the resolution of a request's references (the operator waits
	// a little longer).
	requestTimeout = 20 * time.Second
	// maxRequestErrors bounds the errors of one answer (the rest are counted).
	maxRequestErrors = 50
)

// ScanRequest is the body of a POST to RequestPath: references to scan now, each
// "repository:tag", "repository@sha256:…" or "repository" (every tag of it); an index
// stands for its images.
type ScanRequest struct {
	References []string `json:"references"`
}

// ScanRequestResponse says what became of a ScanRequest.
type ScanRequestResponse struct {
	// Queued images (jobs with cause "request"); Refused those that did not fit in the
	// queue.
	Queued  int `json:"queued"`
	Refused int `json:"refused"`
	// Errors name the references that could not be resolved, and why.
	Errors []string `json:"errors,omitempty"`
}

var tagRE = regexp.MustCompile(`^\w[\w.-]{0,127}$`)

// ParseRequestReference splits a reference of a ScanRequest into its repository and its
// tag or digest (both empty: every tag); ok is false for anything else.
func ParseRequestReference(ref string) (repository, tag, digest string, ok bool) {
	repository = ref
	if r, d, found := strings.Cut(ref, "@"); found {
		repository, digest = r, d
		if !digestRE.MatchString(digest) {
			return "", "", "", false
		}
	} else if i := strings.LastIndex(ref, ":"); i >= 0 {
		repository, tag = ref[:i], ref[i+1:]
		if !tagRE.MatchString(tag) {
			return "", "", "", false
		}
	}
	if len(repository) > 255 || !repositoryRE.MatchString(repository) {
		return "", "", "", false
	}
	return repository, tag, digest, true
}

func (s *Service) serveRequest(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	var req ScanRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJobsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read the request: " + err.Error()})
		return
	}
	if len(req.References) > MaxRequestReferences {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("at most %d references per request", MaxRequestReferences)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	resp := s.Queue.Request(ctx, req.References)
	s.Log.Info("Scans requested", "references", len(req.References), "queued", resp.Queued, "refused", resp.Refused, "errors", len(resp.Errors))
	writeJSON(w, http.StatusOK, resp)
}

// Request queues the images refs name (see ScanRequest) as "request" jobs: scanned even
// when they have a report. What cannot be resolved is named in the answer's Errors; the
// rest is queued all the same. Like the sweep, a request fills at most half the queue
// (the rest is for pushes): beyond it images are refused, not queued.
func (q *Queue) Request(ctx context.Context, refs []string) ScanRequestResponse {
	var resp ScanRequestResponse
	nopts := q.nameOptions()
	opts := q.remote(ctx)
	failures := 0
	fail := func(ref string, err error) {
		failures++
		if failures <= maxRequestErrors {
			resp.Errors = append(resp.Errors, fmt.Sprintf("%s: %v", ref, err))
		}
	}
	defer func() {
		if failures > maxRequestErrors {
			resp.Errors = append(resp.Errors, fmt.Sprintf("and %d more", failures-maxRequestErrors))
		}
	}()
	half := max(cmp.Or(q.Size, 1000)/2, 1)
	now := time.Now()
	for _, ref := range refs {
		if ctx.Err() != nil {
			fail(ref, errors.New("not resolved: the request took too long (name fewer images)"))
			continue
		}
		r, tag, dig, ok := ParseRequestReference(ref)
		if !ok {
			fail(ref, fmt.Errorf("not a repository, repository:tag or repository@sha256:digest"))
			continue
		}
		repo, err := name.NewRepository(q.Registry+"/"+r, nopts...)
		if err != nil {
			fail(ref, err)
			continue
		}
		var targets []name.Reference
		switch {
		case dig != "":
			targets = []name.Reference{repo.Digest(dig)}
		case tag != "":
			targets = []name.Reference{repo.Tag(tag)}
		default:
			tags, err := remote.List(repo, opts...)
			if err != nil {
				fail(ref, fmt.Errorf("list its tags: %w", err))
				continue
			}
			for _, t := range tags {
				if referrerTag.MatchString(t) {
					continue
				}
				if len(targets) == maxRequestTags {
					fail(ref, fmt.Errorf("more than %d tags: only the first %d are queued (name the others one by one)", maxRequestTags, maxRequestTags))
					break
				}
				targets = append(targets, repo.Tag(t))
			}
		}
		for _, t := range targets {
			if ctx.Err() != nil {
				fail(ref, fmt.Errorf("%s not resolved: the request took too long (name fewer images)", t.Identifier()))
				continue
			}
			digests, err := q.images(t, opts)
			if err != nil {
				if isNotFound(err) {
					err = fmt.Errorf("%s is not in the registry", t.Identifier())
					if len(targets) == 1 {
						err = errors.New("not in the registry")
					}
				}
				fail(ref, err)
				continue
			}
			if len(digests) == 0 && len(targets) == 1 {
				fail(ref, ErrNotImage)
			}
			for _, d := range digests {
				if q.Len() >= half {
					resp.Refused++
					continue
				}
				if q.Add(Job{Repository: r, Digest: d, Cause: CauseRequest, Enqueued: now}) {
					resp.Queued++
				} else {
					resp.Refused++
				}
			}
		}
	}
	return resp
}
