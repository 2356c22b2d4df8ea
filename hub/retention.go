package hub

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultRuleTopics is how many topics one retention rule keeps messages
// of when Retention.RuleTopics is 0.
const DefaultRuleTopics = 10000

// RetentionRule keeps, for each topic that Pattern (a subscription filter)
// matches, its latest Count messages, none older than MaxAge (0: no age
// bound). Count 0 keeps none of them.
type RetentionRule struct {
	Pattern string
	Count   int
	MaxAge  time.Duration
}

// ValidateRule checks a rule's pattern and bounds.
func ValidateRule(r RetentionRule) error {
	if err := ValidateFilter(r.Pattern); err != nil {
		return err
	}
	if r.Count < 0 {
		return fmt.Errorf("retain %s: count %d is negative", r.Pattern, r.Count)
	}
	if r.MaxAge < 0 {
		return fmt.Errorf("retain %s: age %s is negative", r.Pattern, r.MaxAge)
	}
	return nil
}

// Equal reports whether r and o bound history the same way.
func (r Retention) Equal(o Retention) bool {
	return r.Count == o.Count && r.MaxAge == o.MaxAge && r.RuleTopics == o.RuleTopics && slices.Equal(r.Rules, o.Rules)
}

// topicsPerRule is the most topics one rule of r keeps messages of.
func (r Retention) topicsPerRule() int {
	if r.RuleTopics > 0 {
		return r.RuleTopics
	}
	return DefaultRuleTopics
}

// OrderRules returns rules most specific first, the order in which a
// topic is matched against them: more literal levels first, then
// patterns without "#" before those with it, then fewer "+" levels; rules that
// tie keep the order they were given in. So "a/b" comes before "a/+",
// which comes before "a/#", which comes before "+/+".
func OrderRules(rules []RetentionRule) []RetentionRule {
	out := slices.Clone(rules)
	slices.SortStableFunc(out, func(a, b RetentionRule) int {
		sa, sb := specificity(a.Pattern), specificity(b.Pattern)
		return cmp.Or(cmp.Compare(sb.literal, sa.literal), cmp.Compare(sa.hash, sb.hash), cmp.Compare(sa.plus, sb.plus))
	})
	return out
}

type patternRank struct{ literal, plus, hash int }

func specificity(pattern string) patternRank {
	var r patternRank
	for level := range strings.SplitSeq(pattern, "/") {
		switch level {
		case "+":
			r.plus++
		case "#":
			r.hash++
		default:
			r.literal++
		}
	}
	return r
}

// RuleOf returns the index in rules (ordered by OrderRules) of the rule
// that decides how long topic's messages are kept, or -1 when none
// matches and the hub-wide bounds apply.
func RuleOf(rules []RetentionRule, topic string) int {
	for i, r := range rules {
		if Match(r.Pattern, topic) {
			return i
		}
	}
	return -1
}
