// The chat WebSocket, reconnected after a drop with a fresh access token. onOpen runs before queued
// frames are sent (the chat page sends chat.resume there); onEvent gets every server event.
import { accessToken, refresh } from "./session.js";

export class LiveSocket {
  constructor({ onEvent, onOpen = () => {}, onState = () => {} }) {
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onState = onState;
    this.queue = [];
    this.ws = null;
    this.attempt = 0;
    this.opened = false;
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
