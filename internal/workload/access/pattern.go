package access

import "strings"

// MatchRepository reports whether repository (a '/'-separated name) matches pattern.
//
// Pattern segments are matched one by one: '**' as a whole segment matches any number of
// segments (including none), '*' inside a segment matches any run of characters within that
// segment, and everything else matches literally. So "team-a/*" matches "team-a/app" but not
// "team-a/app/sub", "team-a/**" matches both (and "team-a" itself), and "**" matches
// everything.
func MatchRepository(pattern, repository string) bool {
	return matchSegments(strings.Split(pattern, "/"), strings.Split(repository, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			// Collapse consecutive '**' and try every split point.
			rest := pat[1:]
			for len(rest) > 0 && rest[0] == "**" {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegments(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 || !matchSegment(pat[0], name[0]) {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// matchSegment matches one segment where '*' matches any run of characters.
func matchSegment(pat, s string) bool {
	parts := strings.Split(pat, "*")
	if len(parts) == 1 {
		return pat == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last) && len(s) >= len(last)
}
