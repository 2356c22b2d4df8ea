// Type declarations of pubsub.js, the browser client of caddy-pubsub. The
// API is described in docs/client.md.

/** The version of this client; Caddy's pubsub_client serves its own. */
export declare const VERSION: string;

/** A transport's name, as in `?transport=`. */
export type Transport = "ws" | "sse" | "poll";

/** The connection's state: `connecting` until it was first live. */
export type State = "connecting" | "live" | "reconnecting" | "closed";

/** One message, delivered once and in order. */
export interface Message {
  id: string;
  topic: string;
  /** "" when the message has none. */
  event: string;
  /** Text, or binary data as a Uint8Array. */
  data: string | Uint8Array;
  /** When the hub stored it: RFC 3339. */
  time: string;
}

/** The server no longer holds messages this client missed. */
export interface Gap {
  last_id?: string;
  first_id?: string;
}

/** What each event's listeners receive. */
export interface Events {
  message: Message;
  open: { transport: Transport };
  fallback: { from: Transport; to: Transport; reason: string };
  gap: Gap;
  error: { transport: Transport; reason: string; retryIn: number };
  close: Record<string, never>;
  state: { state: State; transport: Transport | ""; detail: string };
  refresh: Refresh;
}

/** The outcome of a token refresh on a live WebSocket. */
export interface Refresh {
  /** Whether the server took the new token. */
  ok: boolean;
  /** Why not, when it did not; "" when it did. */
  reason: string;
  /** When the connection's token expires now, in ms since the epoch; null when it has no exp. */
  expires: number | null;
}

export type EventType = keyof Events;
export type Listener<K extends EventType> = (detail: Events[K]) => void;

/** Options of the requests a client makes. */
export interface RequestOptions {
  /** Extra headers of fetch requests (publish, long-poll). */
  headers?: Record<string, string>;
  /** fetch's credentials for publish and long-poll; "include" also opens EventSource withCredentials. Default "same-origin". */
  credentials?: "omit" | "same-origin" | "include";
  /** Shorthand for credentials: "include". */
  withCredentials?: boolean;
  /**
   * Called before each connection attempt, each long-poll request and each
   * HTTP publish; its token goes in Authorization: Bearer (fetch) or
   * ?access_token= (WebSocket, EventSource). Cache it: it is called often.
   * A live WebSocket also calls it before its token expires, and sends
   * the new token in place (see refreshMargin).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
}

export interface ConnectOptions extends RequestOptions {
  /** Topic filters (wildcards allowed). Default: the endpoint's own topic. */
  topics?: string[];
  /** Transports to try, in order. Default ["ws", "sse", "poll"]. */
  transports?: Transport[];
  /** Resume after this ID; "earliest" replays all retained history. Default: only new messages. */
  lastId?: string;
  /**
   * Milliseconds before a live WebSocket's token (a JWT's exp) expires at
   * which getToken is asked for a new one, sent in place; halfway to
   * expiry when that is later. 0 turns it off. Default 30000.
   */
  refreshMargin?: number;
  onMessage?: Listener<"message">;
  onOpen?: Listener<"open">;
  onFallback?: Listener<"fallback">;
  onGap?: Listener<"gap">;
  onError?: Listener<"error">;
  onClose?: Listener<"close">;
  onState?: Listener<"state">;
  onRefresh?: Listener<"refresh">;
}

export interface PublishOptions {
  /** The message's event name. */
  event?: string;
  /** Milliseconds to wait for the server's answer. Default 10000. */
  timeout?: number;
}

export interface ChangeOptions {
  /** Milliseconds to wait for the change to take effect. Default 10000. */
  timeout?: number;
}

export interface Connection {
  /** The live transport, null while none is. */
  readonly transport: Transport | null;
  readonly state: State;
  /** The resume point: the last message's ID. */
  readonly lastId: string;
  /** The topic filters; [] for the endpoint's own topic. */
  readonly topics: string[];
  /** Adds a listener and returns the function that removes it. */
  on<K extends EventType>(type: K, listener: Listener<K>): () => void;
  off<K extends EventType>(type: K, listener: Listener<K>): void;
  /** Publishes one message (topic null: the endpoint's) and resolves to its ID. Data that is not a string is sent as JSON text. */
  publish(topic: string | null, data: unknown, options?: PublishOptions): Promise<string>;
  /** Adds topic filters; their messages since lastId are replayed first. */
  subscribe(topics: string[], options?: ChangeOptions): Promise<void>;
  /** Removes topic filters; it cannot remove them all. */
  unsubscribe(topics: string[], options?: ChangeOptions): Promise<void>;
  /**
   * Hands a live WebSocket a new token in place (token, else getToken's)
   * and resolves once the server has taken it. Rejects on other
   * transports, which take a new token when they reconnect.
   */
  refresh(token?: string, options?: ChangeOptions): Promise<void>;
  /** Ends the connection: transport, timers, waiting promises (rejected) and listeners. */
  close(): void;
}

/** Subscribes to the endpoint at url (absolute, or relative to the page). */
export declare function connect(url: string | URL, options?: ConnectOptions): Connection;

export interface PublishOnceOptions extends PublishOptions, RequestOptions {}

/** Publishes one message without connecting and resolves to its ID. */
export declare function publish(url: string | URL, topic: string | null, data: unknown, options?: PublishOnceOptions): Promise<string>;
