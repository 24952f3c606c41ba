// The browser client: a Speaker and a Listener that keep a broadcast going across API Gateway's
// 2-hour cut, with the guarantees of the Python client (broadcast_client/). It knows nothing of
// any page: it speaks ../shared/PROTOCOL.md and tells the application what happens through
// events on an EventTarget.
//
// States (the `state` event, detail {state, previous, reason, retryIn}):
//   idle -> connecting -> live <-> refreshing
//                          live  -> reconnecting -> live | failed
//   any -> ended (sessionEnded, or close())         any -> failed (a refusal that retrying cannot fix)
// Other events: `session` (sessionCreated / sessionJoined), `frame` ({seq, audio: Uint8Array},
// listener, once each and in order), `gap` ({from, to, missing}), `refreshed`, `message` (any
// other server message), `sent` ({seq, audio}, speaker).

import { backoffDelay, retryAfterDelay } from "./lib/backoff.js";
import { ReorderBuffer } from "./lib/reorder-buffer.js";

export const AUDIO_FORMAT = "pcm_s16le/16000/1";
const FATAL_CODES = new Set(["SESSION_NOT_FOUND", "FORBIDDEN", "UNAUTHORIZED", "UNSUPPORTED_LANGUAGE", "INVALID_PARAMETERS"]);
const OPEN = 1;
// What API Gateway itself sends when a route's integration failed or Lambda throttled it: no
// `type`, not a protocol message (docs/protocol.md, "API Gateway's own answers").
export const GATEWAY_ERROR = "Internal server error";
const GATEWAY_ATTEMPTS = 6;

/** The service's clock; `timeScale` > 1 for a time-compressed local stack. Durations in service seconds. */
export function timing(overrides = {}) {
  const t = {
    refreshAfter: 6000, // when the server asks for a refresh
    maxConnection: 7200, // when API Gateway cuts the connection
    idleTimeout: 600,
    fallbackMargin: 600, // refresh on our own at 110 minutes if no notice came
    handoverTimeout: 10, // real seconds a listener's old connection waits for the new one to catch up
    // Seconds (the service's) the server's audio route may lag a refresh (its 1 s cache, plus a
    // margin): the old connection stays at least this long (see docs/protocol.md).
    routeSettle: 1.5,
    gapTimeout: 2, // real seconds a missing frame is waited for
    // Real seconds a listener holds its first frame before playing: the second frame may overtake
    // the first (concurrent deliveries); playing starts at the lowest frame held.
    startHold: 0.25,
    requestTimeout: 15, // real seconds
    timeScale: 1,
    ...overrides,
  };
  t.real = (serviceSeconds) => serviceSeconds / t.timeScale;
  t.heartbeatEvery = t.real(t.idleTimeout / 3);
  t.fallbackAfter = t.real(Math.min(t.refreshAfter + t.fallbackMargin, t.maxConnection - 60));
  return t;
}

export class SessionError extends Error {
  constructor(reply) {
    super(`${reply.code}: ${reply.message}`);
    this.code = String(reply.code || "");
    this.reply = reply;
  }
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

export function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** One WebSocket: request/response by message type, heartbeats, timers that die with it. */
class Link {
  constructor(socket, onMessage, onClose) {
    this.socket = socket;
    this.openedAt = Date.now();
    this.closing = false; // we close it: not a failure
    this.refreshStarted = false;
    this.seqs = new Set(); // audio seqs that arrived on this connection
    this.newestAtRefresh = -1;
    this.waiters = [];
    this.timers = [];
    this.lastTraffic = Date.now(); // when a message last went either way
    socket.addEventListener("message", (event) => {
      this.lastTraffic = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || typeof message !== "object" || this.#resolve(message)) return;
      onMessage(this, message);
    });
    socket.addEventListener("close", (event) => {
      for (const timer of this.timers) clearTimeout(timer), clearInterval(timer);
      for (const waiter of this.waiters) waiter.reject(new Error("connection closed"));
      this.waiters = [];
      onClose(this, event);
    });
  }

  static open(WebSocketImpl, url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocketImpl(url);
      const failed = () => reject(new Error("handshake failed"));
      socket.addEventListener("open", () => {
        socket.removeEventListener("close", failed);
        resolve(socket);
      });
      socket.addEventListener("close", failed);
    });
  }

  get open() {
    return this.socket.readyState === OPEN;
  }

  #resolve(message) {
    if (message.type === undefined && message.message === GATEWAY_ERROR) {
      // API Gateway names no action: it answers the oldest request still waiting.
      const waiter = this.waiters.shift();
      if (!waiter) return false;
      waiter.resolve({ type: "error", code: "INTERNAL_ERROR", message: GATEWAY_ERROR, action: waiter.action, gateway: true });
      return true;
    }
    const index = this.waiters.findIndex(
      (w) => w.types.includes(message.type) || (message.type === "error" && message.action === w.action),
    );
    if (index < 0) return false;
    const [waiter] = this.waiters.splice(index, 1);
    waiter.resolve(message);
    return true;
  }

  send(payload) {
    this.lastTraffic = Date.now();
    this.socket.send(JSON.stringify(payload));
  }

  request(payload, types, timeoutSeconds) {
    return new Promise((resolve, reject) => {
      const waiter = { types, action: payload.action, resolve: null, reject };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no answer to ${payload.action}`));
      }, timeoutSeconds * 1000);
      waiter.resolve = (reply) => {
        clearTimeout(timer);
        if (reply.type === "error") reject(new SessionError(reply));
        else resolve(reply);
      };
      waiter.reject = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      this.waiters.push(waiter);
      this.send(payload);
    });
  }

  /**
   * A heartbeat whenever the connection has been quiet, both ways, for `seconds`: any message
   * either way resets API Gateway's idle timer, so a listener hearing audio sends none.
   */
  keepAlive(seconds) {
    const check = () => {
      const quiet = (Date.now() - this.lastTraffic) / 1000;
      if (quiet >= seconds && this.open) this.send({ action: "heartbeat" });
      const next = quiet >= seconds ? seconds : seconds - quiet;
      this.timers.push(setTimeout(check, next * 1000));
    };
    this.timers.push(setTimeout(check, seconds * 1000));
  }

  after(seconds, action) {
    this.timers.push(setTimeout(action, seconds * 1000));
  }

  /**
   * Wait, up to `timeoutSeconds`, for the replies to requests still waiting on this link. A
   * handover closes the old connection next; a request sent on it just before (an endSession, a
   * status poll) is answered on it, and closing it first lost that reply. Its close ends the wait.
   */
  async settle(timeoutSeconds) {
    const until = Date.now() + timeoutSeconds * 1000;
    while (this.waiters.length > 0 && this.open && Date.now() < until) await sleep(0.02);
  }

  /** Close with 1000 once what we sent has left (bufferedAmount drained), as a handover needs. */
  async close() {
    this.closing = true;
    for (let i = 0; i < 50 && this.socket.bufferedAmount > 0; i += 1) await sleep(0.02);
    if (this.socket.readyState <= OPEN) this.socket.close(1000, "handover");
  }
}

class Participant extends EventTarget {
  constructor(url, { timing: t = timing(), WebSocketImpl = globalThis.WebSocket, random = Math.random } = {}) {
    super();
    this.url = url;
    this.timing = t;
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;
    this.state = "idle";
    this.sessionId = null;
    this.current = null;
    this.links = new Set();
    this.stats = {
      refreshes: 0,
      reconnects: 0,
      fallbackRefreshes: 0,
      refreshNotices: 0,
      handshakeRetries: 0,
      gatewayErrors: 0, // requests API Gateway answered with "Internal server error", retried
    };
    this.closed = false;
    this.refreshing = null;
    this.reconnecting = false;
  }

  // -- to be provided by Speaker / Listener
  async token() {
    return null;
  }
  refreshBody() {
    throw new Error("not implemented");
  }
  refreshed(_reply) {}
  async handover(_old, _new) {}
  onOther(_link, message) {
    this.emit("message", message);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, reason = "", extra = {}) {
    if (this.state === state || this.state === "ended" || this.state === "failed") return;
    const previous = this.state;
    this.state = state;
    this.emit("state", { state, previous, reason, ...extra });
  }

  /** Open a connection; a refused handshake (429 and others look alike in browsers) is retried with backoff. */
  async openLink() {
    for (let attempt = 0; ; attempt += 1) {
      const token = await this.token();
      const target = token ? `${this.url}?token=${encodeURIComponent(token)}` : this.url;
      try {
        const socket = await Link.open(this.WebSocketImpl, target);
        if (this.closed) {
          socket.close(1000, "client closed"); // close() ran during this handshake: leave nothing open
          throw new Error("client closed");
        }
        const link = new Link(socket, (l, m) => this.dispatch(l, m), (l, e) => this.lost(l, e));
        this.links.add(link);
        link.keepAlive(this.timing.heartbeatEvery);
        link.after(this.timing.fallbackAfter, () => this.fallback(link));
        return link;
      } catch (error) {
        if (this.closed || attempt >= 7) throw error;
        this.stats.handshakeRetries += 1;
        await sleep(backoffDelay(attempt, { random: this.random }));
      }
    }
  }

  /**
   * `link.request`, a few times: after RATE_LIMIT_EXCEEDED it waits retryAfterSeconds (with
   * jitter); after API Gateway's own "Internal server error" (Lambda throttled the route, or its
   * handler failed) it backs off exponentially with full jitter. A throttled request never ran,
   * so sending it again is safe.
   */
  async request(link, payload, ...types) {
    let limited = 0;
    let failed = 0;
    for (;;) {
      try {
        return await link.request(payload, types, this.timing.requestTimeout);
      } catch (error) {
        if (!(error instanceof SessionError)) throw error;
        if (error.reply.gateway) {
          // A throttled join waits for one of the ~2 s joins in flight to end: 0.5 s growing to 5 s.
          failed += 1;
          if (failed === GATEWAY_ATTEMPTS) throw error;
          this.stats.gatewayErrors += 1;
          await sleep(backoffDelay(failed - 1, { base: 0.5, random: this.random }));
          continue;
        }
        limited += 1;
        if (error.code !== "RATE_LIMIT_EXCEEDED" || limited === 4) throw error;
        await sleep(this.timing.real(retryAfterDelay(error.reply.retryAfterSeconds, { random: this.random })));
      }
    }
  }

  dispatch(link, message) {
    if (message.type === "connectionRefreshRequired") {
      this.stats.refreshNotices += 1;
      this.refresh(link);
      return;
    }
    if (message.type === "sessionEnded") {
      this.emit("message", message);
      this.finish("ended", message.reason || "sessionEnded");
      return;
    }
    this.onOther(link, message);
  }

  lost(link) {
    this.links.delete(link);
    // A connection lost during its own handover is replaced by the handover itself.
    if (link === this.current && !link.closing && !link.refreshStarted && !this.closed && !this.reconnecting) {
      this.reconnect();
    }
  }

  fallback(link) {
    if (link === this.current && !link.refreshStarted && !this.closed) {
      this.stats.fallbackRefreshes += 1;
      this.refresh(link);
    }
  }

  /** Hand this role over to a fresh connection, then close the old one when the new one has caught up. */
  async refresh(link = this.current) {
    const old = link;
    if (!old || old !== this.current || old.refreshStarted || this.closed) return;
    old.refreshStarted = true; // set before any await: one handover per connection
    old.newestAtRefresh = old.seqs.size ? Math.max(...old.seqs) : -1;
    await this.refreshing; // one handover at a time
    const done = this.#handover(old);
    this.refreshing = done.catch(() => {});
    await done;
  }

  async #handover(old) {
    if (this.closed) return;
    this.setState("refreshing", "connection refresh");
    const started = Date.now();
    let fresh = null;
    for (let attempt = 0; !this.closed; attempt += 1) {
      try {
        fresh = await this.openLink();
        this.refreshed(await this.request(fresh, this.refreshBody(), "connectionRefreshComplete"));
        break;
      } catch (error) {
        if (fresh) fresh.close();
        fresh = null;
        if (error instanceof SessionError && FATAL_CODES.has(error.code)) {
          this.finish("failed", error.code);
          return;
        }
        await sleep(backoffDelay(attempt, { random: this.random }));
      }
    }
    if (!fresh) return;
    this.current = fresh;
    this.stats.refreshes += 1;
    this.emit("refreshed", { handoverSeconds: (Date.now() - started) / 1000 });
    this.setState("live", "refreshed");
    await this.handover(old, fresh);
    await old.settle(this.timing.requestTimeout);
    await old.close();
  }

  async reconnect() {
    this.reconnecting = true; // a link that fails while we retry must not start a second loop
    try {
      await this.#reconnect();
    } finally {
      this.reconnecting = false;
    }
  }

  async #reconnect() {
    this.setState("reconnecting", "connection lost");
    for (let attempt = 0; !this.closed; attempt += 1) {
      const delay = backoffDelay(attempt, { random: this.random });
      try {
        const link = await this.openLink();
        this.current = link;
        await this.rejoin(link);
        this.stats.reconnects += 1;
        this.setState("live", "reconnected");
        return;
      } catch (error) {
        if (error instanceof SessionError && FATAL_CODES.has(error.code)) {
          this.finish("failed", error.code);
          return;
        }
        this.emit("state", { state: "reconnecting", previous: "reconnecting", reason: "retrying", retryIn: delay });
      }
      await sleep(delay);
    }
  }

  finish(state, reason) {
    if (this.closed) return;
    this.closed = true;
    this.setState(state, reason);
    for (const link of [...this.links]) link.close();
  }

  /** Open the first connection and enter the session. */
  async connect() {
    this.setState("connecting", "connect");
    try {
      const link = await this.openLink();
      this.current = link;
      await this.enter(link);
    } catch (error) {
      this.finish("failed", error instanceof SessionError ? error.code : "unreachable");
      throw error;
    }
    this.setState("live", "connected");
    return this;
  }

  /** A message on the current connection and its reply. */
  call(payload, ...types) {
    return this.request(this.current, payload, ...types);
  }

  status() {
    return this.call({ action: "getSessionStatus" }, "sessionStatus");
  }

  close(reason = "closed") {
    this.finish("ended", reason);
  }
}

export class Speaker extends Participant {
  /** `tokenProvider`: returns (or resolves to) a fresh token; asked for every connection. */
  constructor(url, tokenProvider, { sourceLanguage = "en", sessionId = null, firstSeq = 0, ...options } = {}) {
    super(url, options);
    this.tokenProvider = tokenProvider;
    this.sourceLanguage = sourceLanguage;
    this.sessionId = sessionId;
    this.nextSeq = firstSeq;
    this.outbox = []; // frames sent while no connection was open, sent as soon as one is
    this.role = "speaker";
  }

  async token() {
    return await this.tokenProvider();
  }

  async enter(link) {
    if (this.sessionId) return this.rejoin(link);
    const created = await this.request(
      link,
      { action: "createSession", sourceLanguage: this.sourceLanguage },
      "sessionCreated",
    );
    this.sessionId = created.sessionId;
    this.emit("session", created);
  }

  refreshBody() {
    return { action: "refreshConnection", sessionId: this.sessionId, role: "speaker" };
  }

  async rejoin(link) {
    await this.request(link, this.refreshBody(), "connectionRefreshComplete");
    this.#flush();
  }

  async handover(old, _fresh) {
    this.#flush();
  }

  /** Send one frame of pcm_s16le/16000/1 (at most 500 ms); returns its seq. Never lost to a handover. */
  sendAudio(bytes) {
    const seq = this.nextSeq;
    this.nextSeq += 1;
    const payload = { action: "sendAudio", seq, audio: toBase64(bytes) };
    this.emit("sent", { seq, audio: bytes });
    if (this.current && this.current.open && this.state !== "reconnecting") this.current.send(payload);
    else this.outbox.push(payload);
    return seq;
  }

  #flush() {
    while (this.outbox.length && this.current && this.current.open) this.current.send(this.outbox.shift());
  }

  async end() {
    const reply = await this.call({ action: "endSession" }, "sessionEnded");
    this.finish("ended", "endedBySpeaker");
    return reply;
  }
}

export class Listener extends Participant {
  constructor(url, sessionId, targetLanguage, { reorderCapacity = 512, ...options } = {}) {
    super(url, options);
    this.sessionId = sessionId;
    this.targetLanguage = targetLanguage;
    this.buffer = new ReorderBuffer(reorderCapacity, null, { holdStart: true });
    this.startTimer = null;
    this.resumeToken = null;
    this.joined = null;
    this.waitingSince = 0;
    this.progress = null; // resolves when a frame arrives (the handover waits on it)
    this.role = "listener";
    this.gapTimer = null;
  }

  joinBody() {
    return { action: "joinSession", sessionId: this.sessionId, targetLanguage: this.targetLanguage };
  }

  async enter(link) {
    this.joined = await this.request(link, this.joinBody(), "sessionJoined");
    this.resumeToken = this.joined.resumeToken || null;
    this.emit("session", this.joined);
    this.gapTimer = setInterval(() => this.#checkGaps(), (this.timing.gapTimeout / 4) * 1000);
  }

  refreshBody() {
    const body = {
      action: "refreshConnection",
      sessionId: this.sessionId,
      role: "listener",
      targetLanguage: this.targetLanguage,
    };
    if (this.resumeToken) body.resumeToken = this.resumeToken;
    return body;
  }

  refreshed(reply) {
    this.resumeToken = reply.resumeToken || this.resumeToken;
  }

  async rejoin(link) {
    // The old connection is gone: take our place back with the resumeToken, or join anew without one.
    if (this.resumeToken) this.refreshed(await this.request(link, this.refreshBody(), "connectionRefreshComplete"));
    else await this.request(link, this.joinBody(), "sessionJoined");
  }

  /** Keep the old connection until the new one has caught up (see docs/protocol.md), within a bound. */
  async handover(old, fresh) {
    const cutIn = (old.openedAt + this.timing.real(this.timing.maxConnection) * 1000 - Date.now()) / 1000;
    // Up to the old connection's cut, with no margin before it: a cut during the handover is harmless,
    // closing early loses what is still on its way to the old connection.
    const deadline = Date.now() + Math.max(0, Math.min(this.timing.handoverTimeout, cutIn)) * 1000;
    // Frames sent before every server route includes the new connection may reach the old one only.
    const settle = Math.min(this.timing.real(this.timing.routeSettle), (deadline - Date.now()) / 1000);
    if (settle > 0 && !this.closed) await sleep(settle);
    const newest = old.seqs.size ? Math.max(...old.seqs) : old.newestAtRefresh;
    while (!this.#caughtUp(fresh, newest) && !this.closed) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      await Promise.race([new Promise((resolve) => (this.progress = resolve)), sleep(remaining / 1000)]);
    }
  }

  #caughtUp(fresh, newest) {
    let first = Infinity;
    for (const seq of fresh.seqs) if (seq > newest && seq < first) first = seq;
    return first !== Infinity && this.buffer.nextSeq !== null && this.buffer.nextSeq > first;
  }

  onOther(link, message) {
    if (message.type !== "audio") return super.onOther(link, message);
    if (!Number.isInteger(message.seq) || typeof message.audio !== "string") return;
    let audio;
    try {
      audio = fromBase64(message.audio);
    } catch {
      return;
    }
    link.seqs.add(message.seq);
    if (!this.buffer.waiting) this.waitingSince = Date.now();
    const gapsBefore = this.buffer.stats.gaps.length;
    this.#deliver(this.buffer.push(message.seq, audio), gapsBefore);
    if (this.buffer.holding && this.startTimer === null) {
      this.startTimer = setTimeout(() => this.#begin(), this.timing.startHold * 1000);
    }
    if (this.progress) this.progress();
  }

  /** The first frame's hold is over: play from the lowest frame held. */
  #begin() {
    const gapsBefore = this.buffer.stats.gaps.length;
    this.#deliver(this.buffer.begin(), gapsBefore);
    this.waitingSince = Date.now();
    if (this.progress) this.progress();
  }

  #deliver(ready, gapsBefore) {
    for (const [from, to] of this.buffer.stats.gaps.slice(gapsBefore)) this.emit("gap", { from, to, missing: to - from + 1 });
    for (const { seq, item } of ready) this.emit("frame", { seq, audio: item });
  }

  #checkGaps() {
    if (this.closed) return clearInterval(this.gapTimer);
    if (this.buffer.waiting && Date.now() - this.waitingSince >= this.timing.gapTimeout * 1000) {
      const gapsBefore = this.buffer.stats.gaps.length;
      this.#deliver(this.buffer.skipGap(), gapsBefore);
      this.waitingSince = Date.now();
    }
  }

  finish(state, reason) {
    clearInterval(this.gapTimer);
    clearTimeout(this.startTimer);
    if (this.buffer.holding) this.#begin(); // what was held is played, not dropped
    super.finish(state, reason);
  }
}
