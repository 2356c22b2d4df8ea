package hub

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		err   string // substring of the error; "" for a valid topic
	}{
		{"one level", "news", ""},
		{"several levels", "chat/room/42", ""},
		{"dollar topic", "$pubsub/subscriptions", ""},
		{"space", "hello world", ""},
		{"unicode", "café/日本語", ""},
		{"empty levels", "a//b", ""},
		{"leading and trailing slash", "/a/", ""},
		{"only a slash", "/", ""},
		{"max length", strings.Repeat("a", MaxTopicLength), ""},
		{"max depth", levels("a", MaxTopicDepth), ""},

		{"empty", "", "empty"},
		{"too long", strings.Repeat("a", MaxTopicLength+1), "longer than"},
		{"too long multibyte", strings.Repeat("é", MaxTopicLength/2+1), "longer than"},
		{"too deep", levels("a", MaxTopicDepth+1), "deeper than"},
		{"too deep empty levels", strings.Repeat("/", MaxTopicDepth), "deeper than"},
		{"bad UTF-8", "a/\xff", "UTF-8"},
		{"truncated UTF-8", "caf\xc3", "UTF-8"},
		{"NUL", "a\x00b", "control character"},
		{"newline", "a\nb", "control character"},
		{"tab", "a\tb", "control character"},
		{"DEL", "a\x7f", "control character"},
		{"C1 control", "a\u0085", "control character"},
		{"plus level", "a/+", "wildcards"},
		{"hash level", "a/#", "wildcards"},
		{"only hash", "#", "wildcards"},
		{"only plus", "+", "wildcards"},
		{"plus inside level", "a+b", "wildcards"},
		{"hash inside level", "a/b#", "wildcards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTopic(tt.topic)
			checkValidation(t, "ValidateTopic", tt.topic, err, tt.err)
		})
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		err    string
	}{
		{"literal", "chat/room/42", ""},
		{"hash alone", "#", ""},
		{"plus alone", "+", ""},
		{"trailing hash", "a/#", ""},
		{"plus in the middle", "a/+/b", ""},
		{"plus then hash", "+/+/#", ""},
		{"dollar filter", "$pubsub/#", ""},
		{"empty levels with plus", "a//+", ""},
		{"max depth with hash", levels("+", MaxTopicDepth-1) + "/#", ""},

		{"empty", "", "empty"},
		{"too long", strings.Repeat("+/", MaxTopicLength/2) + "#", "longer than"},
		{"too deep", levels("+", MaxTopicDepth+1), "deeper than"},
		{"bad UTF-8", "\xfe/#", "UTF-8"},
		{"control character", "a/\x1b/#", "control character"},
		{"hash not last", "a/#/b", "must be the last level"},
		{"hash first of two", "#/a", "must be the last level"},
		{"partial plus suffix", "a+", "whole level"},
		{"partial plus prefix", "+a", "whole level"},
		{"partial hash prefix", "#b", "whole level"},
		{"partial hash suffix", "a/b#", "whole level"},
		{"double plus", "a/++", "whole level"},
		{"double hash", "##", "whole level"},
		{"plus and hash", "a/+#", "whole level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFilter(tt.filter)
			checkValidation(t, "ValidateFilter", tt.filter, err, tt.err)
		})
	}
}

func checkValidation(t *testing.T, fn, s string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("%s(%q) = %v, want nil", fn, s, err)
	case want == "":
	case err == nil:
		t.Fatalf("%s(%q) = nil, want error containing %q", fn, s, want)
	case !errors.Is(err, ErrInvalidTopic):
		t.Fatalf("%s(%q) = %v, want it to wrap ErrInvalidTopic", fn, s, err)
	case !strings.Contains(err.Error(), want):
		t.Fatalf("%s(%q) = %v, want it to contain %q", fn, s, err, want)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		// Exact.
		{"a", "a", true},
		{"a/b/c", "a/b/c", true},
		{"a/b", "a/c", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"a", "ab", false},
		{"ab", "a", false},

		// "+" is exactly one level.
		{"+", "a", true},
		{"+", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"+/+", "a/b", true},
		{"+/b", "a/b", true},

		// "#" is the parent level and everything below.
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b", false},
		{"a/#", "ab", false},
		{"a/b/#", "a", false},
		{"a/b/#", "a/c/d", false},
		{"+/#", "a", true},
		{"+/#", "a/b/c", true},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},

		// "$" topics: no first-level wildcard reaches them.
		{"#", "$pubsub/subscriptions", false},
		{"#", "$pubsub", false},
		{"+", "$pubsub", false},
		{"+/x", "$pubsub/x", false},
		{"+/#", "$pubsub/x", false},
		{"$pubsub/#", "$pubsub/subscriptions/a", true},
		{"$pubsub/#", "$pubsub", true},
		{"$pubsub/+", "$pubsub/x", true},
		{"$pubsub/x", "$pubsub/x", true},
		{"$pubsub/#", "pubsub/x", false},
		{"a/+", "a/$b", true}, // "$" only matters in the first level
		{"a/#", "a/$b", true},

		// Empty levels are levels.
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"a/+", "a/", true},
		{"+/a", "/a", true},
		{"+", "/", false},
		{"+/+", "/", true},
		{"a/#", "a/", true},
		{"#", "/", true},
		{"/#", "/a", true},
		{"a//b", "a/b", false},
		{"a/b", "a//b", false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}
