package handlers

import (
	"fmt"
	"net/http"
	"strings"
)

// mayWatch decides, without JWT configured, whether the identity may
// subscribe to filters that name the hub's own topics (a first level
// starting with "$", such as "$pubsub/#" for presence events): those are
// for operators, so the clients that may publish may watch them (loopback
// when no publish_key is set, else the key). Other filters are open. With
// JWT configured the token's subscribe grant decides, and it reaches "$"
// topics only through a pattern that names them.
func (id *identity) mayWatch(filters []string) *denial {
	for _, f := range filters {
		if !strings.HasPrefix(f, "$") {
			continue
		}
		if id.key || (id.loopback && id.ep.PublishKey == "" && !id.ep.NoAnonymous) {
			return nil
		}
		return &denial{status: http.StatusForbidden, reason: fmt.Sprintf("topic %q is reserved: subscribe from loopback, or with the publish key when one is set", f)}
	}
	return nil
}
