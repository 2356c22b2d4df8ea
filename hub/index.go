package hub

import "strings"

// index maps subscription filters to subscribers as a trie of topic levels,
// so a publish walks only the branches its topic can match ("+" and "#"
// children beside the literal one) instead of scanning every subscriber.
// It is not safe for concurrent use: the Hub guards it.
type index struct {
	root node
}

type node struct {
	children map[string]*node
	subs     map[*Subscriber]struct{}
}

func (ix *index) add(filter string, s *Subscriber) {
	n := &ix.root
	for level := range strings.SplitSeq(filter, "/") {
		if n.children == nil {
			n.children = make(map[string]*node)
		}
		child := n.children[level]
		if child == nil {
			child = &node{}
			n.children[level] = child
		}
		n = child
	}
	if n.subs == nil {
		n.subs = make(map[*Subscriber]struct{})
	}
	n.subs[s] = struct{}{}
}

// remove deletes s under filter and prunes branches left empty.
func (ix *index) remove(filter string, s *Subscriber) {
	levels := strings.Split(filter, "/")
	path := make([]*node, 0, len(levels)+1)
	n := &ix.root
	path = append(path, n)
	for _, level := range levels {
		n = n.children[level]
		if n == nil {
			return
		}
		path = append(path, n)
	}
	delete(n.subs, s)
	for i := len(levels) - 1; i >= 0; i-- {
		child := path[i+1]
		if len(child.subs) > 0 || len(child.children) > 0 {
			return
		}
		delete(path[i].children, levels[i])
	}
}

// match calls visit for every subscriber with a filter matching topic. A
// subscriber whose filters overlap is visited once per matching filter.
func (ix *index) match(topic string, visit func(*Subscriber)) {
	ix.matchNodes(topic, func(n *node) { n.visitAll(visit) })
}

// count is how many subscriptions match topic: the visits match would
// make, found from the nodes alone, without visiting a subscriber.
func (ix *index) count(topic string) int {
	n := 0
	ix.matchNodes(topic, func(m *node) { n += len(m.subs) })
	return n
}

// matchNodes calls visit for every node whose filter matches topic.
func (ix *index) matchNodes(topic string, visit func(*node)) {
	reserved := strings.HasPrefix(topic, "$")
	ix.root.match(topic, true, reserved, visit)
}

func (n *node) match(rest string, first, reserved bool, visit func(*node)) {
	level, rest, more := strings.Cut(rest, "/")
	wildcardOK := !(first && reserved)
	if wildcardOK {
		if hash := n.children["#"]; hash != nil {
			visit(hash)
		}
	}
	if child := n.children[level]; child != nil {
		child.descend(rest, more, reserved, visit)
	}
	if wildcardOK {
		if child := n.children["+"]; child != nil {
			child.descend(rest, more, reserved, visit)
		}
	}
}

func (n *node) descend(rest string, more, reserved bool, visit func(*node)) {
	if more {
		n.match(rest, false, reserved, visit)
		return
	}
	visit(n)
	// "a/#" also matches "a" itself.
	if hash := n.children["#"]; hash != nil {
		visit(hash)
	}
}

func (n *node) visitAll(visit func(*Subscriber)) {
	for s := range n.subs {
		visit(s)
	}
}

// walk visits every subscriber under n once per filter it holds there.
func (n *node) walk(visit func(*Subscriber)) {
	n.visitAll(visit)
	for _, child := range n.children {
		child.walk(visit)
	}
}
