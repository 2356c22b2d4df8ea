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
  onMessage?: Listener<"message">;
  onOpen?: Listener<"open">;
  onFallback?: Listener<"fallback">;
  onGap?: Listener<"gap">;
  onError?: Listener<"error">;
  onClose?: Listener<"close">;
  onState?: Listener<"state">;
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
  /** Ends the connection: transport, timers, waiting promises (rejected) and listeners. */
  close(): void;
}

/** Subscribes to the endpoint at url (absolute, or relative to the page). */
export declare function connect(url: string | URL, options?: ConnectOptions): Connection;

export interface PublishOnceOptions extends PublishOptions, RequestOptions {}

/** Publishes one message without connecting and resolves to its ID. */
export declare function publish(url: string | URL, topic: string | null, data: unknown, options?: PublishOnceOptions): Promise<string>;
