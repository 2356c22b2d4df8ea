package handlers

import (
	"errors"

	"github.com/gorilla/websocket"
)

// A WebSocket whose token is about to expire sends a new one in place,
// {"type":"refresh","token":"…","ref":…}, instead of reconnecting: the
// reader verifies it and swaps it in, the writer then holds the
// subscription to the new grant and the new expiry, and acks.

// ident is who the connection is now: the upgrade request's identity with
// the connection's current token.
func (c *wsConn) ident() *identity {
	id := c.id
	id.token = c.token.Load()
	return &id
}

// errRefreshNarrowed ends a connection whose new token no longer grants
// its topics.
var errRefreshNarrowed = errors.New("the refreshed token does not allow the connection's topics")

// refresh checks f's token and swaps it in; the writer applies it.
func (c *wsConn) refresh(f clientFrame) wsCommand {
	cur := c.token.Load()
	switch {
	case c.ep.JWT == nil:
		return wsCommand{frame: errorFrame(f.Ref, "refresh: this endpoint takes no tokens")}
	case cur == nil:
		return wsCommand{frame: errorFrame(f.Ref, "refresh: this connection has no token to refresh")}
	case f.Token == "" || f.Topics != nil || f.Topic != "" || f.Data != nil || f.DataBase64 != nil || f.Messages != nil:
		return wsCommand{frame: errorFrame(f.Ref, `refresh takes "token" alone`)}
	}
	tok, err := c.ep.JWT.Verify(f.Token)
	if err != nil {
		return wsCommand{frame: errorFrame(f.Ref, "refresh: invalid token: "+err.Error())}
	}
	if tok.Subject != cur.Subject {
		return wsCommand{frame: errorFrame(f.Ref, "refresh: the new token is for another subject; connect anew for it")}
	}
	c.token.Store(tok)
	return wsCommand{kind: "refresh", ref: f.Ref}
}

// regrant holds the subscription to the refreshed token's grant; one that
// no longer covers the connection's topics ends it (1008).
func (c *wsConn) regrant(cmd wsCommand) error {
	if c.sub != nil {
		filters := c.sub.Filters()
		opts, denied := c.ident().subscription(filters)
		if denied != nil {
			c.close(websocket.ClosePolicyViolation, errRefreshNarrowed.Error())
			return errRefreshNarrowed
		}
		if _, _, err := c.sub.SetFilters(filters, opts...); err != nil {
			return c.writeFrame(errorFrame(cmd.ref, err.Error()))
		}
	}
	return c.writeFrame(ackFrame(cmd.ref))
}
