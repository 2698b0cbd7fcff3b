package registryconfig

import (
	"fmt"
	"path"
)

// ImmutableTagRule makes tags immutable: once a tag matching Tags exists in a repository
// matching Repositories, it cannot be moved to another manifest or deleted, and the
// manifest it names cannot be deleted — whatever the client's role.
type ImmutableTagRule struct {
	// Repositories are repository patterns (the access rules' grammar).
	Repositories []string `json:"repositories"`
	// Tags are shell patterns (path.Match: *, ?, [a-z]) of tag names.
	Tags []string `json:"tags"`
}

func validateImmutableTags(rules []ImmutableTagRule) []error {
	var errs []error
	for i, r := range rules {
		if len(r.Repositories) == 0 || len(r.Tags) == 0 {
			errs = append(errs, fmt.Errorf("immutableTags[%d]: repositories and tags are required", i))
		}
		for j, p := range r.Repositories {
			if !ValidRepositoryPattern(p) {
				errs = append(errs, fmt.Errorf("immutableTags[%d].repositories[%d]: %q is not a repository pattern", i, j, p))
			}
		}
		for j, t := range r.Tags {
			if _, err := path.Match(t, ""); err != nil || t == "" {
				errs = append(errs, fmt.Errorf("immutableTags[%d].tags[%d]: %q is not a tag pattern", i, j, t))
			}
		}
	}
	return errs
}
