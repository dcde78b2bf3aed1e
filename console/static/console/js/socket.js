// The chat WebSocket, reconnected after a drop with a fresh access token. onOpen runs before queued
// frames are sent (the chat page sends chat.resume there); onEvent gets every server event.
// The server closes a socket (4401) when the access token it was opened with expires: shortly before
// that, the socket is renewed with a fresh token (frames sent meanwhile wait in the queue; not while
// busy(), a question waiting for its chat.start, which the old socket would drop), so a question is
// never sent on a socket about to close; a 4401 close still refreshes and reconnects.
import { accessToken, expiryOf, refresh } from "./session.js";

const RENEW_BEFORE_MS = 20_000;

export class LiveSocket {
  constructor({ onEvent, onOpen = () => {}, onState = () => {}, busy = () => false }) {
    this.onEvent = onEvent;
    this.busy = busy; // true while a frame awaits its answer's first event: no renewal then
    this.onOpen = onOpen;
    this.onState = onState;
    this.queue = [];
    this.ws = null;
    this.attempt = 0;
    this.opened = false;
    this.renewTimer = null;
    this.connect();
  }

  async connect() {
    let token;
    try {
      token = await accessToken();
    } catch {
      this.retry();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    clearTimeout(this.renewTimer);
    const expires = expiryOf(token);
    if (expires) {
      this.renewTimer = setTimeout(() => this.renew(ws, expires), Math.max(0, expires - Date.now() - RENEW_BEFORE_MS));
    }
    ws.addEventListener("open", () => {
      const reconnected = this.opened;
      this.opened = true;
      this.attempt = 0;
      this.onState("open");
      this.onOpen({ reconnected });
      const queued = this.queue.splice(0);
      for (const frame of queued) ws.send(JSON.stringify(frame));
    });
    ws.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onEvent(event);
    });
    ws.addEventListener("close", async (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState("closed");
      if (event.code === 4401) {
        try {
          await refresh();
        } catch {
          /* accessToken() sends a signed-out page to sign in */
        }
      }
      if (event.code !== 4403) this.retry();
    });
  }

  /** Replace ``ws`` (still this socket's) by one opened with a fresh token, before the server closes it. */
  renew(ws, expires) {
    if (this.ws !== ws) return;
    if (this.busy() && expires - Date.now() > 5000) {
      // a question's chat.start is on its way, and the old socket would drop it: renew once it is here
      this.renewTimer = setTimeout(() => this.renew(ws, expires), 500);
      return;
    }
    this.ws = null; // its close event is ignored: this is not a drop
    ws.close(1000, "renewing the token");
    this.connect();
  }

  retry() {
    const delay = Math.min(5000, 300 * 2 ** this.attempt);
    this.attempt += 1;
    setTimeout(() => this.connect(), delay);
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (this.isOpen) this.ws.send(JSON.stringify(frame));
    else this.queue.push(frame);
  }
}
