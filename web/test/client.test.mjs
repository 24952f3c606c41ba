import assert from "node:assert/strict";
import { test } from "node:test";

import { Listener, Speaker, timing } from "../broadcast-client.js";
import { audio, FakeGateway, sleep, until } from "./fake-socket.mjs";

const SESSION = "golden-eagle-427";
const fast = (overrides = {}) => timing({ gapTimeout: 0.3, handoverTimeout: 2, requestTimeout: 2, ...overrides });

function listenerGateway() {
  const gateway = new FakeGateway();
  let tokens = 0;
  gateway.handlers.joinSession = () => ({
    type: "sessionJoined",
    sessionId: SESSION,
    sourceLanguage: "en",
    targetLanguage: "es",
    listenerCount: 1,
    audioFormat: "pcm_s16le/16000/1",
    resumeToken: `token-${tokens++}`,
  });
  gateway.handlers.refreshConnection = (_socket, body) => ({
    type: "connectionRefreshComplete",
    sessionId: body.sessionId,
    role: "listener",
    targetLanguage: "es",
    sourceLanguage: "en",
    audioFormat: "pcm_s16le/16000/1",
    resumeToken: `token-${tokens++}`,
  });
  return gateway;
}

function record(listener) {
  const log = { states: [], frames: [], gaps: [] };
  listener.addEventListener("state", (e) => log.states.push(e.detail.state));
  listener.addEventListener("frame", (e) => log.frames.push(e.detail.seq));
  listener.addEventListener("gap", (e) => log.gaps.push(e.detail));
  return log;
}

test("client: states connecting -> live -> refreshing -> live -> ended, with the resumeToken carried", async () => {
  const gateway = listenerGateway();
  const listener = new Listener("ws://x/live", SESSION, "es", { timing: fast(), WebSocketImpl: gateway.WebSocket });
  const log = record(listener);
  await listener.connect();
  const [first] = gateway.open();
  first.deliver(audio(0));
  first.deliver({ type: "connectionRefreshRequired", sessionId: SESSION, role: "listener", refreshBy: 0 });
  await until(() => gateway.sockets.length === 2 && gateway.sockets[1].sent.length > 0);
  const second = gateway.sockets[1];
  assert.equal(second.sent[0].resumeToken, "token-0");
  second.deliver(audio(1));
  first.deliver(audio(1));
  await until(() => first.readyState === 3);
  assert.equal(first.closeCode, 1000);
  second.deliver({ type: "sessionEnded", sessionId: SESSION, reason: "endedBySpeaker" });
  await until(() => listener.state === "ended");
  assert.deepEqual(log.states, ["connecting", "live", "refreshing", "live", "ended"]);
  assert.deepEqual(log.frames, [0, 1]);
  assert.equal(listener.resumeToken, "token-1");
});

/** A refresh during which frame 2 reaches only the old connection, `lateMs` after frame 3 reached both. */
async function heldBackHandover(t, lateMs, why) {
  const gateway = listenerGateway();
  const listener = new Listener("ws://x/live", SESSION, "es", { timing: t, WebSocketImpl: gateway.WebSocket });
  const log = record(listener);
  await listener.connect();
  const [old] = gateway.open();
  old.deliver(audio(0));
  old.deliver(audio(1));
  old.deliver({ type: "connectionRefreshRequired", sessionId: SESSION, role: "listener", refreshBy: 0 });
  await until(() => listener.stats.refreshes === 1);
  const fresh = gateway.sockets[1];
  // Frame 3 reaches both; frame 2's fan-out read the list before the new connection was in it.
  old.deliver(audio(3));
  fresh.deliver(audio(3));
  await sleep(lateMs);
  assert.equal(old.readyState, 1, why);
  old.deliver(audio(2));
  await until(() => old.readyState === 3);
  assert.deepEqual(log.frames, [0, 1, 2, 3]);
  assert.deepEqual(log.gaps, []);
  listener.close();
}

test("client: the old connection stays open until the new one has caught up (held-back fan-out)", async () => {
  // 600 ms: longer than any fixed drain would have waited
  await heldBackHandover(fast({ gapTimeout: 3 }), 600, "old connection closed before the new one caught up");
});

test("client: close to the old connection's cut, the handover still waits, up to the cut itself", async () => {
  const t = fast({ gapTimeout: 3, maxConnection: 1.6 }); // compressed time: the notice comes just before the cut
  t.fallbackAfter = 60; // the notice triggers the refresh, not the fallback timer
  // 800 ms: inside the cut, past a 1 s margin before it
  await heldBackHandover(t, 800, "old connection closed before its cut with a frame still on its way");
});

test("client: a request sent just before a handover gets its reply on the old connection", async () => {
  // GIVEN a status poll on the current connection, answered there only after a refresh has handed
  // the listener over (routes settle at once: the new connection's first frame ends the handover)
  const gateway = listenerGateway();
  const t = fast({ routeSettle: 0, startHold: 0 });
  const listener = new Listener("ws://x/live", SESSION, "es", { timing: t, WebSocketImpl: gateway.WebSocket });
  await listener.connect();
  try {
    const [old] = gateway.open();
    old.deliver(audio(0));
    const polled = listener.status();
    old.deliver({ type: "connectionRefreshRequired", sessionId: SESSION, role: "listener", refreshBy: 0 });
    await until(() => listener.stats.refreshes === 1);
    gateway.sockets[1].deliver(audio(1));
    await sleep(100); // the handover is over; the reply comes after it
    old.deliver({ type: "sessionStatus", sessionId: SESSION, isActive: true, listenerCount: 1 });
    // THEN the old connection was still open for it, and the poll got it
    assert.equal((await polled).type, "sessionStatus");
    await until(() => old.readyState === 3);
  } finally {
    listener.close();
  }
});

test("client: an unexpected close reconnects with the resumeToken and reports the frames missed as a gap", async () => {
  const gateway = listenerGateway();
  const listener = new Listener("ws://x/live", SESSION, "es", {
    timing: fast(),
    WebSocketImpl: gateway.WebSocket,
    random: () => 0,
  });
  const log = record(listener);
  await listener.connect();
  const [first] = gateway.open();
  first.deliver(audio(0));
  first.drop();
  await until(() => listener.state === "live" && gateway.open().length === 1 && gateway.sockets.length === 2);
  const second = gateway.sockets[1];
  assert.deepEqual(second.sent[0], {
    action: "refreshConnection",
    sessionId: SESSION,
    role: "listener",
    targetLanguage: "es",
    resumeToken: "token-0",
  });
  second.deliver(audio(4));
  await until(() => log.gaps.length === 1);
  assert.deepEqual(log.gaps, [{ from: 1, to: 3, missing: 3 }]);
  assert.deepEqual(log.frames, [0, 4]);
  assert.deepEqual(log.states, ["connecting", "live", "reconnecting", "live"]);
  listener.close();
});

test("client: refused handshakes are retried with backoff; RATE_LIMIT_EXCEEDED waits retryAfterSeconds", async () => {
  const gateway = listenerGateway();
  gateway.refuse = 2;
  let limited = 1;
  const join = gateway.handlers.joinSession;
  gateway.handlers.joinSession = (socket, body) => {
    if (limited-- > 0) {
      return { type: "error", code: "RATE_LIMIT_EXCEEDED", status: 429, action: "joinSession", retryAfterSeconds: 60 };
    }
    return join(socket, body);
  };
  // timeScale 600: 60 service seconds of retryAfter are 0.1 real seconds.
  const listener = new Listener("ws://x/live", SESSION, "es", {
    timing: fast({ timeScale: 600 }),
    WebSocketImpl: gateway.WebSocket,
    random: () => 0.5,
  });
  const started = Date.now();
  await listener.connect();
  assert.equal(listener.state, "live");
  assert.equal(listener.stats.handshakeRetries, 2);
  assert.ok(Date.now() - started >= 100, "retryAfterSeconds was not waited for");
  listener.close();
});

test("client: API Gateway's Internal server error (a throttled join) is retried with backoff", async () => {
  const gateway = listenerGateway();
  let throttled = 2;
  const join = gateway.handlers.joinSession;
  gateway.handlers.joinSession = (socket, body) => {
    // What API Gateway sends when Lambda refuses the invocation: no type, no action
    if (throttled-- > 0) return { message: "Internal server error", connectionId: "c", requestId: "r" };
    return join(socket, body);
  };
  const listener = new Listener("ws://x/live", SESSION, "es", {
    timing: fast(),
    WebSocketImpl: gateway.WebSocket,
    random: () => 0.5,
  });
  await listener.connect();
  assert.equal(listener.state, "live");
  assert.equal(listener.stats.gatewayErrors, 2);
  const [socket] = gateway.open();
  assert.deepEqual(
    socket.sent.filter((m) => m.action === "joinSession").length,
    3,
    "the join was sent again after each Internal server error",
  );
  listener.close();
});

test("client: a sixth Internal server error in a row fails the join", async () => {
  const gateway = listenerGateway();
  gateway.handlers.joinSession = () => ({ message: "Internal server error", connectionId: "c", requestId: "r" });
  const listener = new Listener("ws://x/live", SESSION, "es", { timing: fast(), WebSocketImpl: gateway.WebSocket, random: () => 0 });
  await assert.rejects(listener.connect(), /INTERNAL_ERROR/);
  assert.equal(listener.stats.gatewayErrors, 5);
});

test("client: SESSION_NOT_FOUND on join is failed, with the code as the reason", async () => {
  const gateway = listenerGateway();
  gateway.handlers.joinSession = () => ({ type: "error", code: "SESSION_NOT_FOUND", status: 404, action: "joinSession" });
  const listener = new Listener("ws://x/live", "silent-otter-001", "es", { timing: fast(), WebSocketImpl: gateway.WebSocket });
  const reasons = [];
  listener.addEventListener("state", (e) => reasons.push([e.detail.state, e.detail.reason]));
  await assert.rejects(listener.connect(), /SESSION_NOT_FOUND/);
  assert.deepEqual(reasons.at(-1), ["failed", "SESSION_NOT_FOUND"]);
});

test("client: a speaker asks for a fresh token per connection and loses no frame across a refresh", async () => {
  const gateway = new FakeGateway();
  gateway.handlers.createSession = () => ({ type: "sessionCreated", sessionId: SESSION, sourceLanguage: "en" });
  gateway.handlers.refreshConnection = () => ({ type: "connectionRefreshComplete", sessionId: SESSION, role: "speaker" });
  let issued = 0;
  const speaker = new Speaker("ws://x/live", () => `tok${issued++}`, { timing: fast(), WebSocketImpl: gateway.WebSocket });
  await speaker.connect();
  speaker.sendAudio(new Uint8Array([1, 2]));
  gateway.sockets[0].deliver({ type: "connectionRefreshRequired", sessionId: SESSION, role: "speaker", refreshBy: 0 });
  speaker.sendAudio(new Uint8Array([3]));
  await until(() => speaker.stats.refreshes === 1 && gateway.sockets[0].readyState === 3);
  speaker.sendAudio(new Uint8Array([4]));
  assert.deepEqual(gateway.sockets.map((s) => s.url), ["ws://x/live?token=tok0", "ws://x/live?token=tok1"]);
  const sent = gateway.sockets.flatMap((s) => s.sent.filter((b) => b.action === "sendAudio").map((b) => b.seq));
  assert.deepEqual(sent.sort(), [0, 1, 2]);
  // Dropped: frames sent meanwhile wait in the outbox and go out after the speaker is back.
  const states = [];
  speaker.addEventListener("state", (e) => states.push(e.detail.state));
  gateway.sockets[1].drop();
  speaker.sendAudio(new Uint8Array([5])); // the connection is already closed: this one waits in the outbox
  await until(() => speaker.state === "live" && gateway.sockets.length === 3);
  assert.deepEqual(states, ["reconnecting", "live"]);
  await until(() => gateway.sockets[2].sent.some((b) => b.action === "sendAudio"));
  assert.deepEqual(gateway.sockets[2].sent.filter((b) => b.action === "sendAudio").map((b) => b.seq), [3]);
  speaker.close();
});

test("client: heartbeats only after a quiet spell both ways (audio arriving keeps the connection alive)", async () => {
  const gateway = listenerGateway();
  const listener = new Listener("ws://x/live", SESSION, "es", {
    timing: fast({ idleTimeout: 0.3 }), // a heartbeat after 0.1 s of quiet
    WebSocketImpl: gateway.WebSocket,
  });
  await listener.connect();
  const [socket] = gateway.open();
  const heartbeats = () => socket.sent.filter((m) => m.action === "heartbeat").length;
  for (let seq = 0; seq < 10; seq += 1) {
    socket.deliver(audio(seq));
    await sleep(40);
  }
  assert.equal(heartbeats(), 0);
  await sleep(350);
  assert.ok(heartbeats() >= 2, `heartbeats after the audio stopped: ${heartbeats()}`);
  listener.close();
});
