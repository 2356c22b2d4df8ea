// The client in node, where there is no WebSocket or EventSource: it falls
// back to long-poll, which runs on fetch. Against the real Caddy whose URL
// the Go test integration_test/client passes in PUBSUB_TEST_URL, with an
// open endpoint at /open/ and one needing a JWT signed with
// PUBSUB_TEST_SECRET at /auth/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { connect, publish } from "../pubsub.js";

const base = process.env.PUBSUB_TEST_URL;
const secret = process.env.PUBSUB_TEST_SECRET;
const server = { skip: base ? false : "needs PUBSUB_TEST_URL: run go test ./integration_test/client" };
const WAIT = 10000;

// next resolves to the next detail of conn's event type, or rejects after
// WAIT ms.
function next(conn, type, pred) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error("no " + type + " event within " + WAIT + " ms")); }, WAIT);
    const off = conn.on(type, (d) => {
      if (pred && !pred(d)) return;
      clearTimeout(timer);
      off();
      resolve(d);
    });
  });
}

// collect returns the list that conn's messages are appended to.
function collect(conn) {
  const got = [];
  conn.on("message", (m) => got.push(m.topic + " " + m.data));
  return got;
}

async function until(what, cond) {
  const end = Date.now() + WAIT;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function token(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  return body + "." + createHmac("sha256", secret).update(body).digest("base64url");
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("without WebSocket and EventSource it falls back to long-poll, and delivers", server, async (t) => {
  const timersBefore = timers();
  // No lastId: the poll starts where its HEAD stood (Pubsub-Last-Id), so
  // a message published before its first GET arrives is not missed.
  const conn = connect(base + "/open/x", { topics: ["fallback/1"] });
  t.after(() => conn.close());
  const fallbacks = [];
  conn.on("fallback", (f) => fallbacks.push(f.from + ">" + f.to));
  const got = collect(conn);
  await next(conn, "open");
  assert.deepEqual(fallbacks, ["ws>sse", "sse>poll"]);
  assert.equal(conn.transport, "poll");
  const id = await conn.publish("fallback/1", "over HTTP");
  await until("the message", () => got.length === 1);
  assert.deepEqual(got, ["fallback/1 over HTTP"]);
  assert.equal(conn.lastId, id);

  const closed = next(conn, "close");
  conn.close();
  await closed;
  assert.equal(conn.state, "closed");
  // The poll's own timer goes once its aborted fetch has settled; the
  // reconnect timer must go too.
  await until("close() to stop every timer", () => timers() === timersBefore);
  await assert.rejects(conn.publish("fallback/1", "late"), /connection closed/);
});

test("subscribe and unsubscribe change a live connection's topics", server, async (t) => {
  const conn = connect(base + "/open/x", { transports: ["poll"], topics: ["sub/a"], lastId: "earliest" });
  t.after(() => conn.close());
  const got = collect(conn);
  await next(conn, "open");
  await conn.publish("sub/a", "a1");
  await until("a1", () => got.length === 1);

  await publish(base + "/open/x", "sub/b", "b1"); // before subscribing: replayed after the cursor
  await conn.subscribe(["sub/b"]);
  assert.deepEqual(conn.topics, ["sub/a", "sub/b"]);
  await until("b1", () => got.length === 2);
  await conn.unsubscribe(["sub/a"]);
  await publish(base + "/open/x", "sub/a", "a2");
  await publish(base + "/open/x", "sub/b", "b2");
  await until("b2", () => got.length === 3);
  assert.deepEqual(got, ["sub/a a1", "sub/b b1", "sub/b b2"]);

  await assert.rejects(conn.unsubscribe(["sub/b"]), /leave no topics/);
  await assert.rejects(conn.subscribe([]), /non-empty list/);
  conn.close();
});

test("subscribe needs a connection opened with topics", server, async (t) => {
  const conn = connect(base + "/open/x", { transports: ["poll"] });
  t.after(() => conn.close());
  await assert.rejects(conn.subscribe(["t"]), /opened with topics/);
  conn.close();
});

test("close() rejects what waits for the server and drops the listeners", server, async (t) => {
  const conn = connect(base + "/open/x", { transports: ["poll"], topics: ["close/1"] });
  t.after(() => conn.close());
  await next(conn, "open");
  conn.close();
  let calls = 0;
  conn.on("message", () => calls++); // a listener added after close is never called
  await assert.rejects(conn.subscribe(["close/2"]), /connection closed/);
  await publish(base + "/open/x", "close/1", "after close");
  assert.equal(calls, 0);
});

test("close() from a state listener keeps the next transport from opening", server, async () => {
  const timersBefore = timers();
  // SSE fails at once in node; the client falls back to long-poll, and a
  // listener closes the connection as that attempt starts.
  const conn = connect(base + "/open/x", { transports: ["sse", "poll"], topics: ["close/3"] });
  let opened = false;
  conn.on("open", () => { opened = true; });
  conn.on("state", (s) => { if (s.transport === "poll") conn.close(); });
  await until("closed", () => conn.state === "closed");
  await publish(base + "/open/x", "close/3", "nobody listens"); // a round trip to the server
  await until("no timer left", () => timers() === timersBefore);
  assert.equal(opened, false);
});

test("getToken is called before each long-poll request and publish, its token sent as Bearer", server, async (t) => {
  let calls = 0;
  const getToken = async () => {
    calls++;
    return token({ sub: "node", exp: Math.floor(Date.now() / 1000) + 600, pubsub: { publish: ["t/#"], subscribe: ["t/#"] } });
  };
  const conn = connect(base + "/auth/x", { transports: ["poll"], topics: ["t/1"], getToken, lastId: "earliest" });
  t.after(() => conn.close());
  const got = collect(conn);
  await next(conn, "open");
  const before = calls;
  await conn.publish("t/1", "one");
  await until("one", () => got.length === 1);
  await conn.publish("t/1", "two");
  await until("two", () => got.length === 2);
  assert.ok(calls >= before + 4, "getToken called " + (calls - before) + " times for 2 publishes and 2 polls");
  conn.close();
});

test("refresh() needs a live WebSocket: on long-poll it rejects and the connection goes on", server, async (t) => {
  const getToken = async () => token({ sub: "node", exp: Math.floor(Date.now() / 1000) + 600, pubsub: { subscribe: ["t/#"] } });
  const conn = connect(base + "/auth/x", { transports: ["poll"], topics: ["t/2"], getToken });
  t.after(() => conn.close());
  const refreshes = [];
  conn.on("refresh", (r) => refreshes.push(r));
  await next(conn, "open");
  await assert.rejects(conn.refresh(), /refresh needs a live WebSocket/);
  await assert.rejects(conn.refresh(await getToken()), /refresh needs a live WebSocket/);
  assert.deepEqual(refreshes, [], "a refresh that was never sent has no outcome");
  assert.equal(conn.state, "live");
  conn.close();
  await assert.rejects(conn.refresh(), /connection closed/);
});

test("a refused connection is an error event with the reason and the retry delay; close() stops the retry", server, async (t) => {
  const timersBefore = timers();
  const conn = connect(base + "/auth/x", { transports: ["poll"], topics: ["t/1"] });
  t.after(() => conn.close());
  const err = await next(conn, "error");
  assert.equal(err.transport, "poll");
  assert.match(err.reason, /401/);
  assert.ok(err.retryIn > 0 && err.retryIn <= 30000, "retryIn " + err.retryIn);
  assert.equal(conn.state, "connecting");
  assert.equal(timers(), timersBefore + 1, "the retry timer");
  conn.close();
  assert.equal(timers(), timersBefore, "close() left the retry timer running");
});

test("publish gives up after its timeout", async () => {
  // A server that takes the connection and never answers.
  const sockets = new Set();
  const silent = createServer((s) => sockets.add(s));
  await new Promise((r) => silent.listen(0, "127.0.0.1", r));
  try {
    const url = "http://127.0.0.1:" + silent.address().port + "/events";
    const start = Date.now();
    await assert.rejects(publish(url, "t", "hello", { timeout: 200 }), /no answer within 200 ms/);
    assert.ok(Date.now() - start < 5000);
  } finally {
    for (const s of sockets) s.destroy();
    silent.close();
  }
});
