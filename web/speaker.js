// The speaker page: sign in (code flow with PKCE), create a session, share its link and QR
// code, capture the microphone as pcm_s16le/16000/1 frames, show listener counts, end it.

import { Auth } from "./auth.js";
import { Speaker, timing } from "./broadcast-client.js";
import { checksum, languageOptions, loadConfig, show } from "./page.js";
import qrcode from "./vendor/qrcode.mjs";

const $ = (id) => document.getElementById(id);
const FRAME_MS = 200;
const STATUS_EVERY_MS = 3000;
const MESSAGES = {
  idle: "Not live.",
  connecting: "Starting…",
  live: "Live: listeners hear you.",
  refreshing: "Live (renewing the connection).",
  reconnecting: "Connection lost, reconnecting… (audio is kept and sent when back)",
  ended: "The session has ended.",
  failed: "The session could not continue.",
};
const debug = (window.broadcastDebug = { sent: [], events: [] });

const config = await loadConfig();
const params = new URLSearchParams(location.search);
// A deployment with an external issuer may have no managed login for the page (docs/deploy.md).
const auth = config.auth ? new Auth(config.auth) : { signedIn: false, completeSignIn: async () => false };
const counts = { framesSent: 0, refreshes: 0 };
let speaker = null;
let capture = null;
let muted = false;

function render() {
  if (!config.auth) {
    $("status").textContent = "Sign-in is not configured for this deployment.";
    return;
  }
  $("signed-out").hidden = auth.signedIn;
  $("setup").hidden = !auth.signedIn || speaker !== null;
  $("who").textContent = auth.signedIn ? `Signed in as ${auth.userName}.` : "";
}

function joinLink(sessionId) {
  const url = new URL(config.listenerUrl || "./", location.href);
  url.searchParams.set("session", sessionId);
  return url.href;
}

function showSession(sessionId) {
  show({ sessionId });
  $("live").hidden = false;
  $("session-id").textContent = sessionId;
  const link = joinLink(sessionId);
  $("join-link").href = link;
  $("join-link").textContent = link;
  const code = qrcode(0, "M");
  code.addData(link);
  code.make();
  $("qr").innerHTML = code.createSvgTag({ cellSize: 8, margin: 2, scalable: true, alt: `QR code for ${link}` });
}

async function startMicrophone(sendFrame) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule("capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "capture-processor", { processorOptions: { frameMs: FRAME_MS } });
  node.port.onmessage = ({ data }) => {
    $("level").value = Math.min(1, data.level * 4);
    sendFrame(new Uint8Array(data.pcm.buffer));
  };
  source.connect(node);
  await context.resume();
  return { stop: () => (stream.getTracks().forEach((t) => t.stop()), context.close()) };
}

async function refreshCounts() {
  if (!speaker || !["live", "refreshing"].includes(speaker.state)) return;
  try {
    const status = await speaker.status();
    const rows = Object.entries(status.languages).map(([code, n]) => {
      const row = document.createElement("tr");
      row.dataset.language = code;
      row.append(Object.assign(document.createElement("td"), { textContent: config.languages[code] || code }));
      row.append(Object.assign(document.createElement("td"), { textContent: String(n) }));
      return row;
    });
    $("counts").replaceChildren(...rows);
    $("total").value = String(status.listenerCount);
    show({ listeners: status.listenerCount });
  } catch {
    // the next poll tries again
  }
}

$("sign-in").addEventListener("click", () => auth.signIn());
$("sign-out").addEventListener("click", () => (auth.signOut(), render()));

$("go-live").addEventListener("click", async () => {
  $("go-live").disabled = true;
  const scale = Number(params.get("timeScale") || 1); // a time-compressed local stack (tests, demos)
  speaker = new Speaker(config.webSocketUrl, () => auth.idToken(), {
    sourceLanguage: $("source").value,
    timing: timing({ timeScale: scale }),
  });
  render();
  speaker.addEventListener("state", ({ detail }) => {
    debug.events.push(detail.state);
    show({ state: detail.state });
    $("status").textContent = MESSAGES[detail.state] || detail.state;
    if (detail.state === "ended" || detail.state === "failed") {
      capture?.stop();
      $("end").disabled = true;
    }
  });
  speaker.addEventListener("session", ({ detail }) => showSession(detail.sessionId));
  speaker.addEventListener("refreshed", () => show({ refreshes: ++counts.refreshes }));
  speaker.addEventListener("sent", ({ detail }) => {
    debug.sent.push([detail.seq, checksum(detail.audio)]);
    show({ framesSent: ++counts.framesSent });
  });
  try {
    await speaker.connect();
    capture = await startMicrophone((frame) => muted || speaker.sendAudio(frame));
    setInterval(refreshCounts, STATUS_EVERY_MS);
    refreshCounts();
  } catch (error) {
    $("status").textContent = `Could not go live: ${error.message}`;
  }
});

$("mute").addEventListener("click", () => {
  muted = !muted;
  $("mute").setAttribute("aria-pressed", String(muted));
  $("mute").textContent = muted ? "Unmute microphone" : "Mute microphone";
  show({ muted });
});

$("end").addEventListener("click", async () => {
  $("end").disabled = true;
  capture?.stop();
  try {
    await speaker.end();
  } catch {
    speaker.close("ended");
  }
});

languageOptions($("source"), config.languages, navigator.language.slice(0, 2) || "en");
try {
  await auth.completeSignIn();
} catch (error) {
  $("status").textContent = `Sign-in failed: ${error.message}. Try again.`;
}
render();
