// The listener page: join from the link (?session=...&lang=...) or a typed id, play the audio.
// The client library knows nothing of this page; this page knows nothing of the wire format.

import { Listener, timing } from "./broadcast-client.js";
import { checksum, languageOptions, loadConfig, show } from "./page.js";

const $ = (id) => document.getElementById(id);
const MESSAGES = {
  idle: "Not connected.",
  connecting: "Connecting…",
  live: "Live.",
  refreshing: "Live (renewing the connection).",
  reconnecting: "Connection lost, reconnecting…",
  ended: "The session has ended.",
  failed: "Could not listen.",
};
const FAILURES = {
  SESSION_NOT_FOUND: "No live session with that id. Check the words and number, or ask the speaker.",
  SESSION_FULL: "This session is full.",
  UNSUPPORTED_LANGUAGE: "That language is not supported.",
  unreachable: "The service cannot be reached. Check your connection and try again.",
};
// Tests read what was played, frame by frame; assistive technology reads the data-* on <body>.
const debug = (window.broadcastDebug = { played: [], events: [] });

const config = await loadConfig();
const params = new URLSearchParams(location.search);
languageOptions($("language"), config.languages, params.get("lang") || navigator.language.slice(0, 2));
$("session").value = params.get("session") || "";
const counts = { frames: 0, refreshes: 0, gaps: 0 };
let listener = null;

function setStatus(state, reason) {
  show({ state });
  let text = MESSAGES[state] || state;
  if (state === "ended" && reason === "speakerDisconnected") text = "The session has ended: the speaker left.";
  if (state === "failed") text = FAILURES[reason] || `${MESSAGES.failed} (${reason})`;
  $("status").textContent = text;
}

async function player() {
  // Created inside the Listen click: browsers start audio only from a gesture.
  const context = new AudioContext();
  await context.audioWorklet.addModule("pcm-player-worklet.js");
  const node = new AudioWorkletNode(context, "pcm-player", { processorOptions: { prebufferMs: 300 } });
  node.connect(context.destination);
  await context.resume();
  return node;
}

$("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  const sessionId = $("session").value.trim().toLowerCase();
  const language = $("language").value;
  $("listen").disabled = true;
  const node = await player();
  const scale = Number(params.get("timeScale") || 1); // a time-compressed local stack (tests, demos)
  listener = new Listener(config.webSocketUrl, sessionId, language, { timing: timing({ timeScale: scale }) });
  listener.addEventListener("state", ({ detail }) => {
    debug.events.push(detail.state);
    setStatus(detail.state, detail.reason);
    $("stop").hidden = !["live", "refreshing", "reconnecting"].includes(detail.state);
    $("join").hidden = ["connecting", "live", "refreshing", "reconnecting"].includes(detail.state);
    if (detail.state === "failed" || detail.state === "ended") $("listen").disabled = false;
  });
  listener.addEventListener("session", ({ detail }) => {
    $("facts").hidden = false;
    $("fact-session").textContent = detail.sessionId;
    $("fact-source").textContent = config.languages[detail.sourceLanguage] || detail.sourceLanguage;
    $("fact-target").textContent = config.languages[detail.targetLanguage] || detail.targetLanguage;
  });
  listener.addEventListener("frame", ({ detail }) => {
    const pcm = new Int16Array(detail.audio.buffer, detail.audio.byteOffset, detail.audio.byteLength >> 1);
    node.port.postMessage({ seq: detail.seq, pcm });
    debug.played.push([detail.seq, checksum(detail.audio)]);
    show({ frames: ++counts.frames });
  });
  listener.addEventListener("gap", ({ detail }) => show({ gaps: (counts.gaps += detail.missing) }));
  listener.addEventListener("refreshed", () => show({ refreshes: ++counts.refreshes }));
  try {
    await listener.connect();
  } catch {
    // shown through the `failed` state
  }
});

$("stop").addEventListener("click", () => listener?.close("stopped by listener"));
