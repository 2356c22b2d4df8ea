/*
 * pubsub.js: browser client for caddy-pubsub. No dependencies, no build step.
 *
 * A classic script that defines one global, PubSub:
 *
 *   <script src="/pubsub.js"></script>
 *   <script>
 *     const conn = PubSub.connect("/events/lobby", {
 *       lastId: "earliest",                      // replay the retained history first
 *       onMessage: (m) => console.log(m.topic, m.data),
 *     });
 *     conn.publish(null, "hello");               // null: the endpoint's default topic
 *   </script>
 *
 * connect() tries the transports in order (WebSocket, Server-Sent Events,
 * long-polling), falls back to the next when one cannot connect, reconnects
 * with capped, jittered back-off, and resumes after the last message it saw,
 * so nothing is lost or delivered twice while the server's history covers
 * the interruption. When it does not, onGap says so.
 */
(function (global) {
  "use strict";

  const RETRY_BASE = 500; // ms, first reconnect delay (before jitter)
  const RETRY_CAP = 30000; // ms, longest reconnect delay
  const STABLE = 10000; // ms a connection must last to reset the back-off
  const POLL_ABORT = 90000; // ms after which an unanswered long-poll counts as failed
  const SEEN = 512; // recent message IDs remembered to drop duplicates

  const openers = { ws: openWS, sse: openSSE, poll: openPoll };

  // connect subscribes to url, a pubsub endpoint (absolute or relative to
  // the page). Options, all optional:
  //   topics      topic filters (wildcards allowed); default: the endpoint's topic
  //   transports  order to try, default ["ws", "sse", "poll"]
  //   lastId      resume after this ID; "earliest" replays all retained history
  //   headers     extra headers for fetch requests (publish, long-poll)
  //   onMessage(m)           m = {id, topic, event, data, time}
  //   onGap(g)               g = {last_id, first_id}: messages were missed
  //   onStatus(state, transport, detail)
  //               state: "connecting" (never live yet), "live", "reconnecting", "closed";
  //               transport: the one it concerns; detail: why it went down
  // It returns {transport, state, lastId, publish(topic, data, event), close()}.
  function connect(url, options) {
    const opts = options || {};
    const base = new URL(url, global.location && global.location.href);
    const topics = opts.topics || [];
    const order = (opts.transports || ["ws", "sse", "poll"]).filter((t) => openers[t]);
    if (order.length === 0) throw new Error("pubsub: no known transport in " + opts.transports);

    const conn = {
      transport: null, // the live transport's name, null while none is live
      state: "connecting",
      lastId: opts.lastId || "",
      publish,
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
    const acks = new Map(); // WebSocket publish ref -> {resolve, reject}

    function status(state, name, detail) {
      conn.state = state;
      if (opts.onStatus) opts.onStatus(state, name, detail || "");
    }

    function endpoint(name) {
      const u = new URL(base);
      for (const t of topics) u.searchParams.append("topic", t);
      u.searchParams.set("transport", name);
      return u;
    }

    function start() {
      timer = null;
      const name = order[index];
      const mine = ++generation;
      const ours = (f) => (...args) => { if (mine === generation) f(...args); };
      let since = 0;
      status(everLive ? "reconnecting" : "connecting", name);
      current = openers[name](endpoint(name), conn, opts.headers, {
        open: ours(() => {
          since = Date.now();
          everLive = true;
          tried = 0;
          conn.transport = name;
          status("live", name);
        }),
        message: ours(deliver),
        gap: ours((g) => { if (opts.onGap) opts.onGap(g); }),
        cursor: ours((id) => { if (id) conn.lastId = id; }),
        ack: ours(settle),
        down: ours((reason) => {
          current = null;
          conn.transport = null;
          failAcks(new Error("pubsub: connection lost before the publish was acknowledged"));
          if (since && Date.now() - since >= STABLE) failures = 0;
          let delay = 0;
          if (!since && ++tried < order.length) {
            index = (index + 1) % order.length; // could not connect: try the next transport now
          } else {
            if (!since) { index = 0; tried = 0; } // none works: start over with the first
            delay = Math.min(RETRY_CAP, RETRY_BASE * 2 ** failures++) * (0.5 + Math.random() / 2);
          }
          generation++;
          status(everLive ? "reconnecting" : "connecting", name, reason);
          timer = setTimeout(start, delay);
        }),
      });
    }

    // deliver hands m to onMessage once, and moves the resume cursor.
    function deliver(m) {
      if (!m || typeof m.id !== "string" || seen.has(m.id)) return;
      seen.add(m.id);
      if (seen.size > SEEN) seen.delete(seen.values().next().value);
      conn.lastId = m.id;
      if (opts.onMessage) {
        opts.onMessage({ id: m.id, topic: m.topic, event: m.event || "", data: m.data, time: m.time });
      }
    }

    // publish sends one message (null topic: the endpoint's default) and
    // resolves to its ID. Over a live WebSocket it uses the socket, else a
    // POST. Data that is not a string is sent as its JSON text.
    function publish(topic, data, event) {
      const msg = message(topic, data, event);
      if (conn.transport && current.send) { // live, and it can send
        const ref = String(++nextRef);
        return new Promise((resolve, reject) => {
          acks.set(ref, { resolve, reject });
          current.send(Object.assign({ type: "publish", ref }, msg));
        });
      }
      return post(base, msg, opts.headers);
    }

    function settle(frame) {
      const p = acks.get(frame.ref);
      if (!p) return;
      acks.delete(frame.ref);
      if (frame.error) p.reject(new Error(frame.error));
      else p.resolve(frame.id);
    }

    function failAcks(err) {
      for (const p of acks.values()) p.reject(err);
      acks.clear();
    }

    function close() {
      generation++;
      clearTimeout(timer);
      if (current) current.close();
      current = null;
      conn.transport = null;
      failAcks(new Error("pubsub: connection closed"));
      status("closed", "");
    }

    start();
    return conn;
  }

  // message is what publish sends: data as text, topic and event if given.
  function message(topic, data, event) {
    const msg = { data: typeof data === "string" ? data : JSON.stringify(data) };
    if (topic) msg.topic = topic;
    if (event) msg.event = event;
    return msg;
  }

  // post publishes msg to url and resolves to its ID.
  async function post(url, msg, headers) {
    const res = await fetch(url, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, headers),
      body: JSON.stringify(msg),
    });
    if (!res.ok) throw new Error("pubsub: publish: " + res.status + " " + (await res.text()).trim());
    return (await res.json()).id;
  }

  // Each opener starts one connection attempt and reports through h:
  // open() once it works, message(m), gap(g), cursor(id) for a resume point
  // that is not a message, ack(frame), and down(reason) once, when it ends.
  // It returns {close()}, which ends it without calling down.

  function openWS(url, conn, headers, h) {
    if (typeof WebSocket === "undefined") return later(h, "this browser has no WebSocket");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (conn.lastId) url.searchParams.set("last_id", conn.lastId);
    const ws = new WebSocket(url);
    ws.onopen = () => h.open();
    ws.onmessage = (e) => {
      let f;
      try { f = JSON.parse(e.data); } catch (_) { return; }
      switch (f.type) {
        case "message":
          h.message(f);
          break;
        case "gap":
          h.cursor(f.id); // set when nothing is replayed: the hub's head
          h.gap({ last_id: f.last_id, first_id: f.first_id });
          break;
        case "ack":
          h.ack(f);
          break;
        case "error": // the answer to a frame with this ref
          h.ack({ ref: f.ref, error: f.reason || "error" });
          break;
      }
    };
    ws.onclose = (e) => h.down("WebSocket closed (" + e.code + (e.reason ? " " + e.reason : "") + ")");
    return {
      close() { ws.onclose = null; ws.close(1000); },
      send(frame) { ws.send(JSON.stringify(frame)); },
    };
  }

  function openSSE(url, conn, headers, h) {
    if (typeof EventSource === "undefined") return later(h, "this browser has no EventSource");
    url.searchParams.set("format", "json");
    if (conn.lastId) url.searchParams.set("last_id", conn.lastId);
    const es = new EventSource(url);
    es.onopen = () => h.open();
    es.onmessage = (e) => {
      try { h.message(JSON.parse(e.data)); } catch (_) { /* not an envelope */ }
    };
    es.addEventListener("gap", (e) => {
      h.cursor(e.lastEventId); // set when nothing is replayed: the hub's head
      try { h.gap(JSON.parse(e.data)); } catch (_) { h.gap({}); }
    });
    // EventSource would reconnect by itself, but without back-off or
    // fallback, and not at all after an HTTP error: take over.
    es.onerror = () => { es.close(); h.down("event stream failed"); };
    return { close() { es.close(); } };
  }

  function openPoll(url, conn, headers, h) {
    if (typeof fetch === "undefined") return later(h, "this browser has no fetch");
    const stop = new AbortController();
    async function poll(method) {
      const u = new URL(url);
      if (conn.lastId) u.searchParams.set("last_id", conn.lastId);
      const slow = setTimeout(() => stop.abort(), POLL_ABORT);
      try {
        const res = await fetch(u, { method, headers, cache: "no-store", signal: stop.signal });
        if (!res.ok) throw new Error(res.status + " " + (await res.text()).trim());
        return method === "HEAD" ? null : await res.json();
      } finally {
        clearTimeout(slow);
      }
    }
    (async () => {
      try {
        // A GET waits until there is news; HEAD answers at once whether the
        // endpoint takes this subscription.
        await poll("HEAD");
        h.open();
        for (;;) {
          const body = await poll("GET");
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
    setTimeout(() => h.down(reason), 0);
    return { close() {} };
  }

  global.PubSub = {
    connect,
    // publish sends one message without connecting, and resolves to its ID.
    publish: (url, topic, data, event, headers) =>
      post(new URL(url, global.location && global.location.href), message(topic, data, event), headers),
  };
})(typeof self !== "undefined" ? self : this);
