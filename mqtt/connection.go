package mqtt

// One connection of a link to its broker: dialling, CONNECT and SUBSCRIBE
// with their timeouts, how a lost connection is noticed, what is logged
// when one fails or is given up, and the back-off between attempts.

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"go.uber.org/zap"
)

// subackFailure is the SUBACK return code of a refused subscription.
const subackFailure = 0x80

// connection is one established MQTT connection.
type connection struct {
	client paho.Client
	lost   chan error         // receives why the connection was lost
	ctx    context.Context    // ends with the connection
	cancel context.CancelFunc // closes the network connection
	// refusing is set when the queue refused one of the connection's
	// QoS 1 or 2 messages: the link queues none of its messages after
	// that one, and gives the connection up once pending, its messages
	// in the queue, is down to none.
	refusing atomic.Bool
	pending  atomic.Int64
	// token is the fencing token of the lease the link held when it
	// connected (0: no lease): its messages are published under it.
	token uint64
}

// lose reports err as the reason the connection is lost, unless one is
// reported already.
func (c *connection) lose(err error) {
	select {
	case c.lost <- err:
	default:
	}
}

// connect opens a connection and subscribes. The session is persistent
// (clean session off): the broker keeps the subscriptions and queues QoS 1
// and 2 messages while the link is away, and sends them on reconnect, as
// it sends again those the link received but did not acknowledge.
func (l *Link) connect(ctx context.Context, token uint64) (*connection, error) {
	connCtx, cancel := context.WithCancel(context.Background())
	c := &connection{lost: make(chan error, 1), ctx: connCtx, cancel: cancel, token: token}
	o := paho.NewClientOptions().
		AddBroker(l.url.String()).
		SetClientID(l.clientID).
		SetUsername(l.cfg.Username).
		SetPassword(l.cfg.Password).
		SetCleanSession(false).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).
		// The handler sees the messages in order, and the store loop
		// acknowledges each once the hub has it.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetKeepAlive(keepAlive).
		SetPingTimeout(pingTimeout).
		SetWriteTimeout(connectTimeout).
		SetTLSConfig(l.tls).
		SetCustomOpenConnectionFn(l.dialer(connCtx)).
		// Messages queued in the session arrive right after CONNACK, before
		// the subscriptions are renewed: the default handler takes them.
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { l.receive(c, m) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lose(err) })
	c.client = paho.NewClient(o)

	ct := c.client.Connect()
	if err := l.await(ctx, c, ct); err != nil {
		return nil, err
	}
	sessionPresent := false
	if t, ok := ct.(*paho.ConnectToken); ok {
		sessionPresent = t.SessionPresent()
	}
	filters := make(map[string]byte, len(l.cfg.Subscribe))
	for _, s := range l.cfg.Subscribe {
		filters[s.Filter] = s.QoS
	}
	tok := c.client.SubscribeMultiple(filters, nil)
	if err := l.await(ctx, c, tok); err != nil {
		return nil, err
	}
	if sub, ok := tok.(*paho.SubscribeToken); ok {
		for filter, granted := range sub.Result() {
			if granted == subackFailure {
				l.log.Error("mqtt broker refused the subscription (check the broker's ACL)", zap.String("filter", filter))
			}
		}
	}
	l.connects.Add(1)
	l.log.Info("mqtt connected", zap.Int("subscriptions", len(filters)), zap.Bool("session_present", sessionPresent))
	return c, nil
}

// await waits for tok, giving up (and closing the connection) when ctx
// ends or the connection is lost.
func (l *Link) await(ctx context.Context, c *connection, tok paho.Token) error {
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.cancel()
		// Closing the connection ends a CONNECT at once, but paho may hold
		// a SUBSCRIBE token until its own timers fire (45 s was seen):
		// the link is closing, so it waits only briefly.
		tok.WaitTimeout(closeWait)
		c.client.Disconnect(0)
		return ctx.Err()
	case err := <-c.lost:
		if errors.Is(err, errRefused) {
			c.client.Disconnect(quiesce)
		}
		c.cancel()
		return err
	}
	if err := tok.Error(); err != nil {
		c.client.Disconnect(0)
		c.cancel()
		return err
	}
	return nil
}

// dialer opens the network connection for paho, closing it when ctx ends
// so that Close never waits for a slow broker.
func (l *Link) dialer(ctx context.Context) paho.OpenConnectionFunc {
	return func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		var conn net.Conn
		var err error
		nd := &net.Dialer{Timeout: connectTimeout}
		switch {
		case wsSchemes[u.Scheme]:
			conn, err = paho.NewWebsocket(u.String(), l.tls, connectTimeout, nil, nil)
		case l.tls != nil:
			conn, err = (&tls.Dialer{NetDialer: nd, Config: l.tls}).DialContext(ctx, "tcp", u.Host)
		default:
			conn, err = nd.DialContext(ctx, "tcp", u.Host)
		}
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
}

// connectFailed logs a failed connection attempt: refused credentials at
// error level with what to check (never the password), the rest as a
// warning.
func (l *Link) connectFailed(err error, retry time.Duration) {
	user := zap.String("username", l.cfg.Username)
	retryIn := zap.Duration("retry_in", retry)
	var reason string
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		// Brokers answer a wrong password with either code (mosquitto:
		// "not authorised").
		reason = "broker refused the login (" + err.Error() + ")"
		l.log.Error("mqtt broker refused the login: check username and password", user, zap.Error(err), retryIn)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		reason = "broker rejected the client_id"
		l.log.Error("mqtt broker rejected the client_id: choose another client_id", retryIn)
	default:
		reason = err.Error()
		l.log.Warn("mqtt connect failed; retrying", zap.Error(err), retryIn)
	}
	l.mu.Lock()
	l.lastErr = reason
	l.mu.Unlock()
}

// drained logs that the link gave a connection up to have the messages
// the full queue refused sent again.
func (l *Link) drained(retry time.Duration) {
	l.log.Info("mqtt queue drained: reconnecting for the messages left with the broker", zap.Duration("retry_in", retry))
}

// backoff is a capped exponential back-off with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// ±20% so that many instances do not reconnect in lockstep.
	return b.cur - b.cur/5 + rand.N(2*b.cur/5+1)
}

func (b *backoff) reset() { b.cur = 0 }
