// A scripted stand-in for the browser's WebSocket and for API Gateway behind it.

export class FakeGateway {
  constructor() {
    this.sockets = [];
    this.handlers = {}; // action -> (socket, body) => reply or undefined
    this.refuse = 0; // handshakes to refuse (a 429 looks like a failed open to a browser)
    const gateway = this;
    this.WebSocket = class extends EventTarget {
      constructor(url) {
        super();
        this.url = url;
        this.readyState = 0;
        this.bufferedAmount = 0;
        this.sent = [];
        this.closeCode = null;
        gateway.sockets.push(this);
        setTimeout(() => {
          if (gateway.refuse > 0) {
            gateway.refuse -= 1;
            this.readyState = 3;
            this.dispatchEvent(new Event("error"));
            this.dispatchEvent(Object.assign(new Event("close"), { code: 1006 }));
            return;
          }
          this.readyState = 1;
          this.dispatchEvent(new Event("open"));
        }, 1);
      }
      send(text) {
        const body = JSON.parse(text);
        this.sent.push(body);
        const handler = gateway.handlers[body.action];
        const reply = handler ? handler(this, body) : undefined;
        if (reply) setTimeout(() => this.deliver(reply), 1);
      }
      deliver(message) {
        if (this.readyState !== 1) return;
        this.dispatchEvent(Object.assign(new Event("message"), { data: JSON.stringify(message) }));
      }
      close(code = 1000) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        this.closeCode = code;
        setTimeout(() => this.dispatchEvent(Object.assign(new Event("close"), { code })), 1);
      }
      drop() {
        this.close(1006);
      }
    };
  }

  open() {
    return this.sockets.filter((s) => s.readyState === 1);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

export function audio(seq, sessionId = "golden-eagle-427") {
  return { type: "audio", timestamp: 0, sessionId, seq, audio: btoa(String.fromCharCode(seq & 255)) };
}
