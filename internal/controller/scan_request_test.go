package controller

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseScanRequest(t *testing.T) {
	for value, want := range map[string][]string{
		"team-a/app:1.4 team-a/web":             {"team-a/app:1.4", "team-a/web"},
		"a:1,b@sha256:00\n c  ,, d # e f":       {"a:1", "b@sha256:00", "c", "d"},
		"# only a comment":                      nil,
		"x #1764743000 #and another":            {"x"},
		"\tteam-a/app:v1,team-a/app:v2\t#retry": {"team-a/app:v1", "team-a/app:v2"},
	} {
		if got := parseScanRequest(value); !slices.Equal(got, want) {
			t.Errorf("parseScanRequest(%q) = %q, want %q", value, got, want)
		}
	}
}

func TestRequestKey(t *testing.T) {
	short := strings.Repeat("a:1 ", 1024) // exactly 4096 bytes
	if requestKey(short) != short {
		t.Errorf("a value of 4096 bytes is recorded as itself")
	}
	long := short + "b:2"
	k := requestKey(long)
	if !strings.HasPrefix(k, "sha256:") || len(k) != len("sha256:")+64 || k == requestKey(long+" ") {
		t.Errorf("requestKey of a long value = %q, want a digest that tells values apart", k)
	}
}

// TestEventNote: what the scanner answers is cut to the Events API's limit on a character
// boundary, so the event is never refused (and lost) for its length.
func TestEventNote(t *testing.T) {
	for _, msg := range []string{
		strings.Repeat("x", 5000),
		strings.Repeat("é", 700),  // 2 bytes each: the cut lands inside one
		strings.Repeat("日本", 300), // 3 bytes each
	} {
		got := eventNote(msg)
		if len(got) > maxEventNote || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Errorf("eventNote(%d bytes) = %d bytes, valid UTF-8 %v", len(msg), len(got), utf8.ValidString(got))
		}
		if !strings.HasPrefix(msg, strings.TrimSuffix(got, "…")) {
			t.Errorf("eventNote changed the message, not only cut it")
		}
	}
	if got := eventNote("short"); got != "short" {
		t.Errorf("eventNote(short) = %q", got)
	}
}
