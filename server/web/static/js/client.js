// The browser client of the wire protocol: REST calls, a ticket per WebSocket connection,
// resume from the last event id, the seed's reconnection schedule, an application heartbeat,
// and the SSE fallback with REST actions when WebSockets cannot connect.

import {
  BACKOFF,
  FATAL_CLOSE_CODES,
  backoffDelay,
  describeError,
  newRequestId,
  outageDelay,
  restAction,
} from "./protocol.js";

/** An error answer: HTTP status (0 over WebSocket), contract code, message, retryAfter. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.code = code ?? null;
    this.retryAfter = retryAfter ?? null;
  }
}

/** One REST call; the decoded JSON, or an ApiError with the server's code and message. */
export async function api(
  path,
  { method = "GET", token = null, body, headers = {}, timeout = 10000 } = {},
) {
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  if (token) sent.Authorization = `Bearer ${token}`;
  // A server that accepts connections but never answers (hung, paused) must not hang us.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeout);
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: abort.signal,
    });
    text = await response.text();
  } catch {
    throw new ApiError(0, null, "The server cannot be reached.");
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    let detail = data && typeof data === "object" ? data : {};
    if (detail.error && typeof detail.error === "object") detail = detail.error;
    const message = detail.message || (typeof detail.error === "string" ? detail.error : "");
    throw new ApiError(
      response.status,
      detail.code,
      message || response.statusText,
      detail.retryAfter,
    );
  }
  return data;
}

const SSE_TYPES = [
  "session.state",
  "session.join",
  "session.leave",
  "session.end",
  "session.update",
  "poll.create",
  "poll.update",
  "poll.end",
  "poll.results",
  "chat.message",
  "chat.aggregate",
  "chat.delete",
  "chat.mute",
  "reaction.burst",
  "tip.received",
  "platform.event",
  "announcement",
  "error",
  "resumed",
];

/**
 * A live connection to one session. Dispatches `frame` events (detail: the envelope) and
 * `state` events (detail: `{state, ...}`) where state is one of connecting, live,
 * reconnecting, resumed, sse, ended, failed.
 *
 * Options (tests shrink them): `heartbeat` ms between pings, `heartbeatTimeout` ms,
 * `backoff` schedule, `transport` "auto" | "ws" | "sse".
 */
export class SessionConnection extends EventTarget {
  constructor({ sessionId, token, role = "viewer", options = {} }) {
    super();
    this.sessionId = sessionId;
    this.token = token;
    this.role = role;
    this.heartbeat = options.heartbeat ?? 30000;
    this.heartbeatTimeout = options.heartbeatTimeout ?? 10000;
    this.maxMissed = options.maxMissed ?? 2;
    this.openTimeout = options.openTimeout ?? 10000;
    this.backoff = options.backoff ?? BACKOFF;
    this.transport = options.transport === "sse" ? "sse" : "ws";
    this.allowFallback = options.transport !== "ws";
    this.state = "idle";
    this.lastId = null;
    this.attempt = 0;
    this.reconnects = 0;
    this.ws = null;
    this.source = null;
    this.pending = new Map();
    this.stopped = false;
    this.timer = null;
    this.beat = null;
    this.lastFrameAt = 0;
    this.missed = 0;
    this.resuming = false;
    this.wsWorked = false;
  }

  /** Begin connecting (over WebSocket, or SSE when asked or fallen back). */
  start() {
    this.stopped = false;
    this.setState("connecting");
    this.connect();
  }

  /** Leave cleanly and stop reconnecting. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopHeartbeat();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(envelope("session.leave", {})));
      this.ws.close(1000, "leaving");
    }
    this.ws = null;
    this.source?.close();
    this.source = null;
    this.failPending(new ApiError(0, null, "You left the session."));
  }

  /** Reconnect now (the person pressed "retry" after the client gave up). */
  retry() {
    this.attempt = 0;
    this.stopped = false;
    clearTimeout(this.timer);
    this.setState("connecting");
    this.connect();
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  /**
   * Send a client message and wait for its one reply (the reply's payload), or an ApiError.
   * Over SSE the message goes as its REST equivalent. Refused with 4009 (the server's Redis
   * unreachable), it is sent again with the same requestId after retryAfter, so it counts once.
   */
  async request(type, payload = {}, options = {}) {
    const requestId = options.requestId ?? newRequestId();
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.requestOnce(type, payload, { ...options, requestId });
      } catch (error) {
        const wait = outageDelay(error, attempt);
        if (wait === null) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  async requestOnce(type, payload, { timeout = 10000, requestId }) {
    if (this.transport === "sse") {
      const call = restAction(this.sessionId, type, payload, requestId);
      if (!call) throw new ApiError(0, 4006, `${type} cannot be sent over the fallback.`);
      return api(call.path, {
        method: call.method,
        token: this.token,
        body: call.body,
        headers: call.headers,
      });
    }
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      throw new ApiError(0, null, "Not connected right now; try again in a moment.");
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ApiError(0, null, "The server did not answer in time."));
      }, timeout);
      this.pending.set(requestId, { resolve, reject, timer });
      ws.send(JSON.stringify(envelope(type, payload, requestId)));
    });
  }

  failPending(error) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this.pending.clear();
  }

  // --- connecting --------------------------------------------------------------------------

  async connect() {
    if (this.stopped) return;
    if (this.transport === "sse") {
      this.connectSse();
      return;
    }
    let ticket;
    try {
      const answer = await api("/v1/vstudio/ticket", {
        method: "POST",
        token: this.token,
        body: { sessionId: this.sessionId, role: this.role },
      });
      ticket = answer.ticket;
    } catch (error) {
      this.onTicketError(error);
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ ticket });
    if (this.lastId) query.set("since", this.lastId);
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/v1/vstudio/ws?${query}`);
    } catch {
      this.fallBack(); // the browser or its policy will not open WebSockets at all
      return;
    }
    this.ws = ws;
    this.resuming = Boolean(this.lastId);
    let opened = false;
    // A proxy may hold the upgrade forever; give up on it like on a refusal.
    const openTimer = setTimeout(() => {
      if (!opened && this.ws === ws) {
        ws.close();
        ws.onclose?.({ code: 1006, reason: "no answer to the upgrade" });
      }
    }, this.openTimeout);
    ws.onopen = () => {
      opened = true;
      this.wsWorked = true;
      clearTimeout(openTimer);
      this.lastFrameAt = Date.now();
      this.startHeartbeat(ws);
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(frame, ws);
    };
    ws.onclose = (event) => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopHeartbeat();
      this.failPending(new ApiError(0, null, "The connection dropped; try again."));
      if (this.stopped) return;
      if (!opened && !this.wsWorked) {
        // The ticket came over HTTP a moment ago, so HTTP works and WebSockets do not. (Once
        // a WebSocket has worked, a failed open is the server going away, not a proxy.)
        this.fallBack();
        return;
      }
      this.onClose(event.code, event.reason);
    };
  }

  fallBack() {
    if (!this.allowFallback) {
      this.scheduleRetry();
      return;
    }
    this.transport = "sse";
    this.setState("connecting", { fallback: true });
    this.connect();
  }

  onTicketError(error) {
    if (error.status === 401) {
      this.dispatchEvent(new CustomEvent("unauthorized", { detail: error }));
      this.fail(error.message || "Please sign in again.", error);
    } else if (error.status === 403 || error.status === 404) {
      const code = error.code ?? (error.status === 404 ? 4001 : 4004);
      if (code === 4002) this.end({});
      else this.fail(error.message, error);
    } else if (error.code === 4002) {
      this.end({});
    } else {
      this.scheduleRetry();
    }
  }

  onClose(code, reason) {
    if (code === 4002) {
      this.end({});
    } else if (FATAL_CLOSE_CODES[code]) {
      this.fail(FATAL_CLOSE_CODES[code], { code, message: reason });
    } else if (this.state !== "ended") {
      // A refusal that may pass (session full, too fast) is retried, and the person told why.
      const why = code >= 4000 ? describeError({ code, message: reason }) : null;
      this.scheduleRetry(code === 1012 && this.attempt === 0 ? 100 : null, why);
    }
  }

  scheduleRetry(delay = null, reason = null) {
    if (this.stopped) return;
    if (this.attempt >= this.backoff.retries) {
      this.fail(`Gave up after ${this.attempt} attempts to reconnect.`, null);
      return;
    }
    const wait = delay ?? backoffDelay(this.attempt, Math.random, this.backoff);
    this.attempt += 1;
    this.reconnects += 1;
    this.setState("reconnecting", { attempt: this.attempt, delay: wait, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  fail(message, error) {
    this.stopped = true;
    this.source?.close();
    this.setState("failed", { message, error });
  }

  end(payload) {
    if (this.state === "ended") return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopHeartbeat();
    this.source?.close();
    this.source = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "session ended");
    }
    this.failPending(new ApiError(0, 4002, "This session has ended."));
    this.setState("ended", { payload });
  }

  // --- frames ------------------------------------------------------------------------------

  onFrame(frame, ws) {
    this.lastFrameAt = Date.now();
    this.missed = 0;
    const requestId = frame.requestId;
    if (requestId && this.pending.has(requestId)) {
      const { resolve, reject, timer } = this.pending.get(requestId);
      this.pending.delete(requestId);
      clearTimeout(timer);
      if (frame.type === "error") {
        const body = frame.payload ?? {};
        reject(new ApiError(0, body.code, body.message, body.retryAfter));
      } else {
        resolve(frame.payload ?? {});
      }
      return;
    }
    if (frame.type === "ping") {
      if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(envelope("pong", {})));
      return;
    }
    if (frame.type === "pong") return;
    if (frame.id) this.lastId = frame.id;
    this.noteRecovery(frame);
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    if (frame.type === "session.end") this.end(frame.payload ?? {});
  }

  /** The first frames of a connection say whether a resume was complete. */
  noteRecovery(frame) {
    const live = this.transport === "sse" ? "sse" : "live";
    const recovered = frame.recovered ?? frame.payload?.recovered;
    if (typeof recovered === "boolean" && this.reconnects > 0) {
      this.attempt = 0;
      this.setState(recovered ? "resumed" : live, { recovered, transport: this.transport });
      return;
    }
    if (this.state !== live && this.state !== "resumed" && this.state !== "ended") {
      this.attempt = 0;
      this.setState(live, { transport: this.transport });
    }
  }

  // --- heartbeat ---------------------------------------------------------------------------

  /**
   * Ping every `heartbeat` ms; a ping with no frame at all back within `heartbeatTimeout` is
   * missed, and `maxMissed` in a row drop the connection (it then reconnects and resumes).
   * Each ping is judged on its own answer, so a background tab whose timers the browser
   * slows down is not mistaken for a dead connection.
   */
  startHeartbeat(ws) {
    this.stopHeartbeat();
    this.missed = 0;
    this.beat = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const sentAt = Date.now();
      ws.send(JSON.stringify(envelope("ping", {})));
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (this.lastFrameAt >= sentAt || this.ws !== ws) return;
        this.missed += 1;
        if (this.missed >= this.maxMissed) {
          ws.close(4000, "heartbeat missed");
          // onclose fires only when the close handshake ends; the connection is gone now.
          ws.onclose?.({ code: 1006, reason: "heartbeat missed" });
        }
      }, this.heartbeatTimeout);
    }, this.heartbeat);
  }

  stopHeartbeat() {
    clearInterval(this.beat);
    clearTimeout(this.pongTimer);
    this.beat = null;
  }

  // --- SSE fallback ------------------------------------------------------------------------

  connectSse() {
    this.source?.close();
    const query = new URLSearchParams({ token: this.token });
    if (this.lastId) query.set("lastEventId", this.lastId);
    const source = new EventSource(
      `/v1/vstudio/sse/${encodeURIComponent(this.sessionId)}?${query}`,
    );
    this.source = source;
    this.resuming = Boolean(this.lastId);
    for (const type of SSE_TYPES) {
      source.addEventListener(type, (event) => {
        let payload = {};
        try {
          payload = event.data ? JSON.parse(event.data) : {};
        } catch {
          return;
        }
        const frame = { type, payload };
        if (event.lastEventId) frame.id = event.lastEventId;
        this.onFrame(frame, null);
      });
    }
    source.onopen = () => {
      if (this.state !== "sse") {
        this.attempt = 0;
        this.setState("sse", { transport: "sse" });
      }
    };
    source.onerror = () => {
      if (this.source !== source || this.stopped) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (ended session, bad token) or is down: ask why.
        this.source = null;
        this.checkSseRefusal();
      } else if (this.state !== "reconnecting") {
        this.reconnects += 1;
        this.setState("reconnecting", { transport: "sse" });
      }
    };
  }

  async checkSseRefusal() {
    try {
      const session = await api(`/v1/vstudio/sessions/${encodeURIComponent(this.sessionId)}`, {
        token: this.token,
      });
      if (session?.status === "ended") {
        this.end({});
        return;
      }
    } catch (error) {
      if (error.status === 401) {
        this.dispatchEvent(new CustomEvent("unauthorized", { detail: error }));
      }
    }
    this.scheduleRetry();
  }
}

function envelope(type, payload, requestId) {
  const frame = { type, payload, timestamp: Date.now() };
  if (requestId) frame.requestId = requestId;
  return frame;
}
