// Type-checked against pubsub.d.ts (tsc --noEmit, run by
// integration_test/client): uses of the API that must compile, and, each
// marked as an expected error, uses that must not, so declarations that
// grow too loose fail as surely as ones that are wrong.
import { connect, publish, VERSION, type Connection, type Message, type State } from "../pubsub.js";

const version: string = VERSION;

const conn: Connection = connect("/events/lobby", {
  topics: ["chat/#"],
  transports: ["ws", "poll"],
  lastId: "earliest",
  credentials: "include",
  getToken: async () => "token",
  onGap: (g) => console.log(g.first_id),
  refreshMargin: 60000,
  onRefresh: (r) => console.log(r.ok, r.reason, r.expires),
});
connect(new URL("https://push.example.com/events/x"), { withCredentials: true, getToken: () => null });

const off: () => void = conn.on("message", (m: Message) => console.log(m.id, m.topic, m.event, m.data, m.time));
off();
conn.on("fallback", (f) => console.log(f.from, f.to, f.reason));
conn.on("error", (e) => console.log(e.transport, e.reason, e.retryIn.toFixed()));
conn.on("state", (s) => {
  const state: State = s.state;
  console.log(state, s.transport, s.detail);
});
conn.on("open", (o) => console.log(o.transport));

async function use(): Promise<void> {
  const id: string = await conn.publish(null, { text: "hi" }, { event: "chat", timeout: 2000 });
  await conn.subscribe(["news/+"], { timeout: 5000 });
  await conn.unsubscribe(["chat/#"]);
  await conn.refresh();
  await conn.refresh("token", { timeout: 3000 });
  const other: string = await publish("/events/x", "chat/lobby", "hello", { headers: { "X-Id": id }, timeout: 1000 });
  console.log(other, conn.transport, conn.state, conn.lastId, conn.topics, version);
  conn.close();
}
void use();

// @ts-expect-error: no such event
conn.on("messages", () => {});
// @ts-expect-error: a message listener gets a Message, not a number
conn.on("message", (m: number) => m);
// @ts-expect-error: no such transport
connect("/events/x", { transports: ["http2"] });
// @ts-expect-error: subscribe takes a list
void conn.subscribe("chat/#");
// @ts-expect-error: the state is read-only
conn.state = "live";
// @ts-expect-error: a token is a string
void conn.refresh(42);
// @ts-expect-error: credentials is fetch's mode
connect("/events/x", { credentials: true });
