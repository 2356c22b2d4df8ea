// pubsub.js: the browser client of caddy-pubsub, as an ES module. No
// dependencies. The same code, wrapped as a classic script that defines the
// global PubSub, is pubsub.global.js (generated: go generate in the
// repository root). Caddy serves both, matching its own version, with the
// pubsub_client directive; the API is in docs/client.md.
//
//   import { connect } from "/pubsub.js";
//   const conn = connect("/events/lobby", { lastId: "earliest" });
//   conn.on("message", (m) => console.log(m.topic, m.data));
//   await conn.publish(null, "hello");
//
// connect() tries the transports in order (WebSocket, Server-Sent Events,
// long-polling), falls back to the next when one cannot connect, reconnects
// with capped, jittered back-off, and resumes after the last message it saw,
// so nothing is lost or delivered twice while the server's history covers
// the interruption. When it does not, a "gap" event says so. A WebSocket
// swaps an expiring token for getToken's in place, without reconnecting.

/** The version of this client; Caddy serves the client of its own module. */
export const VERSION = "0.1.0";

const RETRY_BASE = 500; // ms, first reconnect delay (before jitter)
const RETRY_CAP = 30000; // ms, longest reconnect delay
const STABLE = 10000; // ms a connection must last to reset the back-off
const POLL_ABORT = 90000; // ms after which an unanswered long-poll counts as failed
const TIMEOUT = 10000; // ms, default wait for a publish or a subscription change
const SEEN = 512; // recent message IDs remembered to drop duplicates
const REFRESH_MARGIN = 30000; // ms before a WebSocket's token expires that a new one is sent, by default
const REFRESH_MIN = 1000; // ms, the shortest wait for an automatic refresh: never a tight loop
const LONGEST_TIMER = 2 ** 31 - 1; // ms: setTimeout wraps a longer delay around, even to one that fires at once
const EVENTS = ["message", "open", "fallback", "gap", "error", "close", "state", "refresh"];

const openers = { ws: openWS, sse: openSSE, poll: openPoll };

/**
 * connect subscribes to url, a pubsub endpoint (absolute or relative to the
 * page), and returns the connection. See docs/client.md for the options.
 */
export function connect(url, options) {
  const opts = options || {};
  const base = new URL(url, pageURL());
  const order = (opts.transports || ["ws", "sse", "poll"]).filter((t) => openers[t]);
  if (order.length === 0) throw new Error("pubsub: no known transport in " + opts.transports);
  const credentials = opts.withCredentials ? "include" : opts.credentials || "same-origin";
  const request = { headers: opts.headers || {}, credentials, getToken: opts.getToken };

  const listeners = new Map(EVENTS.map((type) => [type, new Set()]));
  const conn = {
    transport: null, // the live transport's name, null while none is live
    state: "connecting",
    lastId: opts.lastId || "",
    topics: (opts.topics || []).slice(), // [] means the endpoint's own topic
    on,
    off,
    publish,
    subscribe,
    unsubscribe,
    refresh,
    close,
  };
  const seen = new Set();
  let index = 0; // transport being tried
  let tried = 0; // transports that failed since the last live one
  let failures = 0; // consecutive attempts that did not last, for back-off
  let everLive = false;
  let generation = 0; // bumped per attempt: callbacks of old attempts are ignored
  let current = null; // the running attempt: {close(), send?(frame)}
  let timer = null;
  let nextRef = 0;
  const pending = new Map(); // WebSocket frame ref -> {resolve, reject, timer}
  let reopened = []; // subscription changes waiting for the next open: {resolve, reject, timer}
  const refreshMargin = opts.refreshMargin === undefined ? REFRESH_MARGIN : opts.refreshMargin;
  let wsToken = ""; // the token the live WebSocket holds, as far as the client knows
  let refreshTimer = null; // the next automatic refresh

  for (const type of EVENTS) {
    const f = opts["on" + type[0].toUpperCase() + type.slice(1)];
    if (f) on(type, f);
  }

  // on adds a listener for one event type and returns the function that
  // removes it.
  function on(type, listener) {
    const set = listeners.get(type);
    if (!set) throw new Error("pubsub: unknown event " + JSON.stringify(type) + ": use one of " + EVENTS.join(", "));
    set.add(listener);
    return () => set.delete(listener);
  }

  function off(type, listener) {
    const set = listeners.get(type);
    if (set) set.delete(listener);
  }

  // emit calls the listeners of type; one that throws does not keep the
  // others, or the connection, from running.
  function emit(type, detail) {
    for (const f of [...listeners.get(type)]) {
      try {
        f(detail);
      } catch (err) {
        setTimeout(() => { throw err; }, 0); // reported as uncaught, not swallowed
      }
    }
  }

  function setState(state, transport, detail) {
    conn.state = state;
    emit("state", { state, transport, detail: detail || "" });
  }

  function endpoint(name) {
    const u = new URL(base);
    for (const t of conn.topics) u.searchParams.append("topic", t);
    u.searchParams.set("transport", name);
    return u;
  }

  function start() {
    timer = null;
    const name = order[index];
    const mine = ++generation;
    const ours = (f) => (...args) => { if (mine === generation) f(...args); };
    let since = 0;
    setState(everLive ? "reconnecting" : "connecting", name);
    if (conn.state === "closed") return; // a state listener called close()
    current = openers[name](endpoint(name), conn, request, {
      open: ours((token) => {
        since = Date.now();
        everLive = true;
        tried = 0;
        conn.transport = name;
        wsToken = token || "";
        planRefresh(false);
        setState("live", name);
        emit("open", { transport: name });
        settleAll(reopened.splice(0), null);
      }),
      message: ours(deliver),
      gap: ours((g) => emit("gap", g)),
      cursor: ours((id) => { if (id) conn.lastId = id; }),
      reply: ours(reply),
      down: ours((reason) => {
        current = null;
        conn.transport = null;
        stopRefresh();
        settleAll(pending.values(), new Error("pubsub: connection lost before the server answered"));
        pending.clear();
        if (since && Date.now() - since >= STABLE) failures = 0;
        let delay = 0;
        const fallback = !since && ++tried < order.length;
        if (fallback) {
          index = (index + 1) % order.length; // could not connect: try the next transport now
        } else {
          if (!since) { index = 0; tried = 0; } // none works: start over with the first
          delay = Math.min(RETRY_CAP, RETRY_BASE * 2 ** failures++) * (0.5 + Math.random() / 2);
        }
        generation++;
        timer = setTimeout(start, delay);
        setState(everLive ? "reconnecting" : "connecting", name, reason);
        if (fallback) emit("fallback", { from: name, to: order[index], reason });
        else if (!since) emit("error", { transport: name, reason, retryIn: Math.round(delay) });
      }),
    });
  }

  // restart ends the running attempt and starts the same transport at
  // once: a subscription change on a transport that cannot make it live.
  function restart() {
    if (conn.state === "closed") return;
    generation++;
    if (current) current.close();
    current = null;
    conn.transport = null;
    stopRefresh();
    clearTimeout(timer);
    start();
  }

  // deliver emits m once, and moves the resume cursor.
  function deliver(m) {
    if (!m || typeof m.id !== "string" || seen.has(m.id)) return;
    seen.add(m.id);
    if (seen.size > SEEN) seen.delete(seen.values().next().value);
    conn.lastId = m.id;
    const data = m.encoding === "base64" ? fromBase64(m.data) : m.data;
    emit("message", { id: m.id, topic: m.topic, event: m.event || "", data, time: m.time });
  }

  // wsRequest sends frame over the live WebSocket and resolves to the
  // server's ack frame, or rejects with its error or after timeout ms.
  function wsRequest(frame, timeout) {
    const ref = String(++nextRef);
    return new Promise((resolve, reject) => {
      const p = { resolve, reject };
      p.timer = setTimeout(() => {
        pending.delete(ref);
        reject(new Error("pubsub: no answer within " + timeout + " ms"));
      }, timeout);
      pending.set(ref, p);
      current.send(Object.assign({ ref }, frame));
    });
  }

  function reply(frame) {
    const p = pending.get(frame.ref);
    if (!p) return;
    pending.delete(frame.ref);
    settle(p, frame.error ? new Error("pubsub: " + frame.error) : null, frame);
  }

  // publish sends one message (null topic: the endpoint's default) and
  // resolves to its ID. Over a live WebSocket it uses the socket, else a
  // POST. Data that is not a string is sent as its JSON text.
  function publish(topic, data, options) {
    const o = options || {};
    const timeout = o.timeout || TIMEOUT;
    if (conn.state === "closed") return Promise.reject(new Error("pubsub: connection closed"));
    if (conn.transport && current.send) {
      return wsRequest(Object.assign({ type: "publish" }, message(topic, data, o.event)), timeout).then((f) => f.id);
    }
    return post(base, message(topic, data, o.event), request, timeout);
  }

  // subscribe adds topic filters to the connection. Messages of the new
  // topics since the last message delivered are replayed first, on every
  // transport: a live WebSocket changes its subscription in place, the
  // other transports reconnect with the new list.
  function subscribe(topics, options) {
    return change("subscribe", topics, (list) => list.concat(topics.filter((t) => !list.includes(t))), options);
  }

  // unsubscribe removes topic filters; it cannot remove them all (close
  // the connection instead).
  function unsubscribe(topics, options) {
    return change("unsubscribe", topics, (list) => list.filter((t) => !topics.includes(t)), options);
  }

  function change(type, topics, next, options) {
    const o = options || {};
    const timeout = o.timeout || TIMEOUT;
    if (conn.state === "closed") return Promise.reject(new Error("pubsub: connection closed"));
    if (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => typeof t !== "string" || t === "")) {
      return Promise.reject(new Error("pubsub: " + type + " takes a non-empty list of topics"));
    }
    if (conn.topics.length === 0) {
      return Promise.reject(new Error("pubsub: " + type + " needs a connection opened with topics, not the endpoint's own topic"));
    }
    const list = next(conn.topics);
    if (list.length === 0) return Promise.reject(new Error("pubsub: unsubscribe would leave no topics: close() instead"));
    conn.topics = list;
    if (conn.transport && current.send) {
      const frame = { type, topics };
      if (type === "subscribe" && conn.lastId) frame.last_id = conn.lastId;
      return wsRequest(frame, timeout).then(() => undefined);
    }
    // Not live over a WebSocket: the next connection carries the list.
    return new Promise((resolve, reject) => {
      const p = { resolve, reject };
      p.timer = setTimeout(() => {
        reopened = reopened.filter((q) => q !== p);
        reject(new Error("pubsub: not connected again within " + timeout + " ms"));
      }, timeout);
      reopened.push(p);
      if (conn.transport) restart();
    }).then(() => undefined);
  }

  // refresh hands the live WebSocket a new token in place (a refresh
  // frame), token or else getToken's, and resolves once the server has
  // taken it. Other transports cannot: they take a new token when they
  // reconnect, which the server makes them do when theirs expires.
  function refresh(token, options) {
    const o = options || {};
    const timeout = o.timeout || TIMEOUT;
    if (conn.state === "closed") return Promise.reject(new Error("pubsub: connection closed"));
    if (!conn.transport || !current.send) {
      return Promise.reject(new Error("pubsub: refresh needs a live WebSocket; other transports take a new token when they reconnect"));
    }
    if (token === undefined && !request.getToken) return Promise.reject(new Error("pubsub: refresh without a token needs getToken"));
    const mine = generation;
    return new Promise((resolve) => resolve(token === undefined ? request.getToken() : token)).then((t) => {
      if (mine !== generation) throw new Error("pubsub: connection lost before the refresh");
      if (typeof t !== "string" || t === "") throw new Error("pubsub: refresh: no token");
      return sendToken(t, timeout);
    }).catch((err) => {
      emit("refresh", { ok: false, reason: err.message, expires: expiry(wsToken) });
      throw err;
    });
  }

  // sendToken sends a refresh frame with token over the live WebSocket; once
  // the server acks it, the connection holds token and the next automatic
  // refresh is planned from its expiry.
  function sendToken(token, timeout) {
    return wsRequest({ type: "refresh", token }, timeout).then(() => {
      wsToken = token;
      planRefresh(false);
      emit("refresh", { ok: true, reason: "", expires: expiry(token) });
    });
  }

  // planRefresh sets the timer of the next automatic refresh of a live
  // WebSocket's token: refreshMargin before it expires, or halfway there
  // when that is later (a token shorter-lived than the margin), and after
  // a failed attempt halfway to expiry again. Once less than REFRESH_MIN
  // would be left to wait it gives up: the server closes the connection
  // when the token expires, and the reconnect asks getToken afresh.
  function planRefresh(failed) {
    stopRefresh();
    if (!refreshMargin || !request.getToken || !conn.transport || !current.send) return;
    const expires = expiry(wsToken);
    if (expires === null) return;
    const left = expires - Date.now();
    const wait = failed ? left / 2 : Math.max(left - refreshMargin, left / 2);
    if (wait < REFRESH_MIN) return;
    // A token that outlives the longest timer is planned for again then.
    refreshTimer = wait > LONGEST_TIMER ? setTimeout(() => planRefresh(failed), LONGEST_TIMER) : setTimeout(autoRefresh, wait);
  }

  function stopRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = null;
  }

  // autoRefresh asks getToken for a newer token than the connection's and
  // sends it; a failure (getToken throws, its token is the same one or no
  // later, the server refuses it) is retried later by planRefresh.
  async function autoRefresh() {
    refreshTimer = null;
    const mine = generation;
    const old = wsToken;
    try {
      const t = await request.getToken();
      if (mine !== generation) return; // the connection went: the next one plans its own
      if (typeof t !== "string" || t === "" || t === old) throw new Error("getToken gave no new token");
      const expires = expiry(t);
      if (expires !== null && expires <= Math.max(Date.now(), expiry(old))) throw new Error("getToken gave a token that expires no later");
      await sendToken(t, TIMEOUT);
    } catch (err) {
      if (mine !== generation) return;
      emit("refresh", { ok: false, reason: err.message, expires: expiry(old) });
      planRefresh(true);
    }
  }

  // close ends the connection for good: the running transport, every
  // timer, waiting publishes and subscription changes (rejected), and the
  // listeners (after "close" has been emitted).
  function close() {
    if (conn.state === "closed") return;
    generation++;
    clearTimeout(timer);
    timer = null;
    stopRefresh();
    if (current) current.close();
    current = null;
    conn.transport = null;
    const err = new Error("pubsub: connection closed");
    settleAll(pending.values(), err);
    pending.clear();
    settleAll(reopened.splice(0), err);
    setState("closed", "");
    emit("close", {});
    for (const set of listeners.values()) set.clear();
  }

  start();
  return conn;
}

function settle(p, err, value) {
  clearTimeout(p.timer);
  if (err) p.reject(err);
  else p.resolve(value);
}

function settleAll(ps, err) {
  for (const p of ps) settle(p, err);
}

/**
 * publish sends one message without connecting, and resolves to its ID.
 * options: {event, timeout, headers, credentials, withCredentials, getToken}.
 */
export function publish(url, topic, data, options) {
  const o = options || {};
  const credentials = o.withCredentials ? "include" : o.credentials || "same-origin";
  return post(new URL(url, pageURL()), message(topic, data, o.event),
    { headers: o.headers || {}, credentials, getToken: o.getToken }, o.timeout || TIMEOUT);
}

function pageURL() {
  return typeof location !== "undefined" ? location.href : undefined;
}

// message is what publish sends: data as text, topic and event if given.
function message(topic, data, event) {
  const bytes = asBytes(data);
  const msg = bytes ? { data_base64: toBase64(bytes) } : { data: typeof data === "string" ? data : JSON.stringify(data) };
  if (topic) msg.topic = topic;
  if (event) msg.event = event;
  return msg;
}

// asBytes returns binary data (an ArrayBuffer or a view of one, such as a
// Uint8Array) as a Uint8Array, and null for anything else.
function asBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

// binaryFrame is a publish of binary data as one WebSocket binary frame:
// the length of its JSON header (2 bytes, big-endian), the header (the
// publish frame without data), the data.
function binaryFrame(frame) {
  const bytes = fromBase64(frame.data_base64);
  const header = Object.assign({}, frame);
  delete header.data_base64;
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(2 + h.length + bytes.length);
  new DataView(out.buffer).setUint16(0, h.length);
  out.set(h, 2);
  out.set(bytes, 2 + h.length);
  return out;
}

// binaryMessage reads a binary message frame: header length, JSON
// header, data (a Uint8Array).
function binaryMessage(buf) {
  const n = new DataView(buf).getUint16(0);
  const f = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 2, n)));
  f.data = new Uint8Array(buf, 2 + n);
  return f;
}

// authorized returns the headers of a fetch: the configured ones, and the
// token of getToken as Authorization: Bearer.
async function authorized(request) {
  const headers = Object.assign({}, request.headers);
  if (request.getToken) {
    const token = await request.getToken();
    if (token) headers.Authorization = "Bearer " + token;
  }
  return headers;
}

// withToken adds getToken's token to url as ?access_token=, for the
// transports that cannot send headers (WebSocket, EventSource), and
// returns the token.
async function withToken(url, request) {
  if (!request.getToken) return "";
  const token = await request.getToken();
  if (token) url.searchParams.set("access_token", token);
  return token || "";
}

// expiry returns when a JWT expires, in ms since the epoch, read from its
// payload's exp without verifying it (the server does); null for a token
// that is not a JWT or has no exp.
function expiry(token) {
  try {
    const payload = token.split(".")[1];
    const exp = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch (_) {
    return null;
  }
}

// post publishes msg to url and resolves to its ID, or rejects when no
// answer came within timeout ms.
async function post(url, msg, request, timeout) {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeout);
  try {
    const headers = await authorized(request);
    headers["Content-Type"] = "application/json";
    const res = await fetch(url, {
      method: "POST",
      headers,
      credentials: request.credentials,
      body: JSON.stringify(msg),
      signal: stop.signal,
    });
    if (!res.ok) throw new Error("pubsub: publish: " + res.status + " " + (await res.text()).trim());
    return (await res.json()).id;
  } catch (err) {
    if (stop.signal.aborted) throw new Error("pubsub: publish: no answer within " + timeout + " ms");
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

// Each opener starts one connection attempt and reports through h:
// open(token) once it works (a WebSocket: with the token it opened with), message(m), gap(g), cursor(id) for a resume point
// that is not a message, reply(frame) for an answer to a frame sent, and
// down(reason) once, when it ends. It returns {close()}, which ends it
// without calling down, and, when it can send frames, send(frame).

function openWS(url, conn, request, h) {
  if (typeof WebSocket === "undefined") return later(h, "no WebSocket here");
  let ws = null;
  let closed = false;
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (conn.lastId) url.searchParams.set("last_id", conn.lastId);
  withToken(url, request).then((token) => {
    if (closed) return;
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => h.open(token);
    ws.onmessage = (e) => {
      let f;
      try { f = typeof e.data === "string" ? JSON.parse(e.data) : binaryMessage(e.data); } catch (_) { return; }
      switch (f.type) {
        case "message":
          h.message(f);
          break;
        case "gap":
          h.cursor(f.id); // set when nothing is replayed: the hub's head
          h.gap({ last_id: f.last_id, first_id: f.first_id });
          break;
        case "ack":
          h.reply(f);
          break;
        case "error": // the answer to a frame with this ref
          h.reply({ ref: f.ref, error: f.reason || "error" });
          break;
      }
    };
    ws.onclose = (e) => h.down("WebSocket closed (" + e.code + (e.reason ? " " + e.reason : "") + ")");
  }, (err) => h.down("getToken failed: " + err.message));
  return {
    close() {
      closed = true;
      if (ws) { ws.onclose = ws.onmessage = ws.onopen = null; ws.close(1000); }
    },
    // Binary data goes raw, in a binary frame, rather than in base64.
    send(frame) { ws.send(frame.data_base64 === undefined ? JSON.stringify(frame) : binaryFrame(frame)); },
  };
}

function openSSE(url, conn, request, h) {
  if (typeof EventSource === "undefined") return later(h, "no EventSource here");
  let es = null;
  let closed = false;
  url.searchParams.set("format", "json");
  if (conn.lastId) url.searchParams.set("last_id", conn.lastId);
  withToken(url, request).then(() => {
    if (closed) return;
    es = new EventSource(url, { withCredentials: request.credentials === "include" });
    es.onopen = () => h.open();
    es.onmessage = (e) => {
      try { h.message(JSON.parse(e.data)); } catch (_) { /* not an envelope */ }
    };
    es.addEventListener("gap", (e) => {
      h.cursor(e.lastEventId); // set when nothing is replayed: the hub's head
      try { h.gap(JSON.parse(e.data)); } catch (_) { h.gap({}); }
    });
    // EventSource would reconnect by itself, but without back-off,
    // fallback or a fresh token, and not at all after an HTTP error: take
    // over.
    es.onerror = () => { es.close(); h.down("event stream failed"); };
  }, (err) => h.down("getToken failed: " + err.message));
  return {
    close() {
      closed = true;
      if (es) es.close();
    },
  };
}

function openPoll(url, conn, request, h) {
  if (typeof fetch === "undefined") return later(h, "no fetch here");
  const stop = new AbortController();
  async function poll(method) {
    const u = new URL(url);
    if (conn.lastId) u.searchParams.set("last_id", conn.lastId);
    const headers = await authorized(request);
    const slow = setTimeout(() => stop.abort(), POLL_ABORT);
    try {
      const res = await fetch(u, { method, headers, credentials: request.credentials, cache: "no-store", signal: stop.signal });
      if (!res.ok) throw new Error(res.status + " " + (await res.text()).trim());
      // HEAD has no body: its cursor comes as a header.
      return method === "HEAD" ? { last_id: res.headers.get("Pubsub-Last-Id") } : await res.json();
    } finally {
      clearTimeout(slow);
    }
  }
  (async () => {
    try {
      // A GET waits until there is news; HEAD answers at once whether the
      // endpoint takes this subscription.
      const head = await poll("HEAD");
      // Poll from where the HEAD stood, so nothing published before the
      // first GET is missed.
      if (!conn.lastId && head.last_id) h.cursor(head.last_id);
      h.open();
      while (!stop.signal.aborted) {
        const body = await poll("GET");
        if (stop.signal.aborted) break;
        const msgs = body.messages || [];
        if (body.gap) h.gap({ last_id: conn.lastId, first_id: msgs.length ? msgs[0].id : "" });
        for (const m of msgs) h.message(m);
        h.cursor(body.last_id);
      }
    } catch (err) {
      h.down("long-poll failed: " + err.message); // ignored after close()
    }
  })();
  return { close() { stop.abort(); } };
}

// later reports a failed attempt after the opener has returned.
function later(h, reason) {
  const t = setTimeout(() => h.down(reason), 0);
  return { close() { clearTimeout(t); } };
}
