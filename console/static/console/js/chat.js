import { ApiError, api, waitWords } from "./session.js";
import { LiveSocket } from "./socket.js";
import { el, setupShell, toast } from "./ui.js";

setupShell();

const log = document.getElementById("log");
const title = document.getElementById("chat-title");
const sessionList = document.getElementById("sessions");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const statusBox = document.getElementById("chat-status");
const projectSelect = document.getElementById("scope-project");
const docsBox = document.getElementById("scope-docs");

let sessionId = new URLSearchParams(location.search).get("session");
// The answer being streamed: its id, the text received so far (the offset to resume from), its nodes.
let streaming = null;
const links = new Map(); // document id -> {url, until}

function setStatus(text) {
  statusBox.textContent = text;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

function scrollDown() {
  log.scrollTop = log.scrollHeight;
}

function messageNode(role, text = "") {
  const content = el("div", { class: "content", dir: "auto" }, text);
  const node = el("article", { class: `msg ${role}` }, el("span", { class: "who" }, role === "user" ? "You" : "DocuMind"), content);
  log.append(node);
  scrollDown();
  return { node, content };
}

async function linkFor(documentId) {
  const cached = links.get(documentId);
  if (cached && cached.until > Date.now()) return cached.url;
  const data = await api(`/documents/${documentId}/file-link/`);
  const url = new URL(data.url, location.origin).href;
  links.set(documentId, { url, until: Date.now() + (data.expires_in - 30) * 1000 });
  return url;
}

function pages(citation) {
  if (!citation.page_start) return "";
  return citation.page_end && citation.page_end !== citation.page_start
    ? `pages ${citation.page_start}–${citation.page_end}`
    : `page ${citation.page_start}`;
}

async function resolveLinks(citations) {
  const hrefs = new Map();
  for (const id of new Set(citations.map((c) => c.document_id))) {
    try {
      hrefs.set(id, await linkFor(id));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
  }
  return hrefs;
}

function citeLink(citation, href, text) {
  if (!href) return el("span", { class: "cite", title: `${citation.document_title} (deleted)` }, text);
  return el(
    "a",
    {
      class: "cite",
      href: `${href}#page=${citation.page_start || 1}`,
      target: "_blank",
      rel: "noopener",
      "data-document": citation.document_id,
      "data-page": String(citation.page_start || 1),
      title: `${citation.document_title}, ${pages(citation)}`,
    },
    text,
  );
}

/** The final text with "[n]" as links to the cited page, and the list of sources under it. */
async function renderFinal(target, content, citations) {
  const byNumber = new Map((citations || []).map((c) => [String(c.n), c]));
  let hrefs = new Map();
  if (byNumber.size) {
    try {
      hrefs = await resolveLinks(citations);
    } catch {
      hrefs = new Map();
    }
  }
  const parts = [];
  let last = 0;
  for (const match of content.matchAll(/\[(\d+)\]/g)) {
    const citation = byNumber.get(match[1]);
    if (!citation) continue;
    parts.push(content.slice(last, match.index));
    parts.push(citeLink(citation, hrefs.get(citation.document_id), match[0]));
    last = match.index + match[0].length;
  }
  parts.push(content.slice(last));
  target.content.replaceChildren(...parts);
  target.node.querySelector(".sources")?.remove();
  if (byNumber.size) {
    const list = el("ol", { class: "sources", "aria-label": "Sources" });
    for (const citation of citations) {
      list.append(
        el(
          "li",
          { value: String(citation.n) },
          citeLink(citation, hrefs.get(citation.document_id), citation.document_title || "Document"),
          pages(citation) ? `, ${pages(citation)}` : "",
        ),
      );
    }
    target.node.append(list);
  }
  scrollDown();
}

function note(target, text, kind = "") {
  target.node.querySelector(".note")?.remove();
  if (text) target.node.append(el("p", { class: `note ${kind}` }, text));
}

// Links expire: a stale one is renewed on click before the tab opens.
log.addEventListener("click", async (event) => {
  const anchor = event.target.closest("a.cite");
  if (!anchor) return;
  const cached = links.get(anchor.dataset.document);
  if (cached && cached.until > Date.now()) return;
  event.preventDefault();
  const opened = window.open("about:blank", "_blank");
  try {
    const href = `${await linkFor(anchor.dataset.document)}#page=${anchor.dataset.page}`;
    anchor.href = href;
    if (opened) opened.location = href;
  } catch (error) {
    opened?.close();
    toast(error.message);
  }
});

function sessionItem(session) {
  const link = el(
    "a",
    { href: `?session=${session.id}`, dir: "auto", "aria-current": session.id === sessionId ? "true" : null },
    session.title || "Untitled",
  );
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openSession(session.id, session.title);
  });
  return el("li", { "data-id": session.id }, link);
}

async function loadSessions() {
  const data = await api("/chat/sessions/?page_size=50");
  sessionList.replaceChildren(...data.results.map(sessionItem));
}

function markCurrent() {
  for (const link of sessionList.querySelectorAll("a")) {
    if (link.closest("li").dataset.id === sessionId) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
  const url = new URL(location.href);
  if (sessionId) url.searchParams.set("session", sessionId);
  else url.searchParams.delete("session");
  history.replaceState(null, "", url);
}

async function openSession(id, sessionTitle) {
  if (streaming) return;
  sessionId = id;
  markCurrent();
  title.textContent = sessionTitle || "Chat";
  log.replaceChildren();
  const data = await api(`/chat/sessions/${id}/messages/?page_size=100`);
  const items = (data.results || data).slice().sort((a, b) => a.created_at.localeCompare(b.created_at));
  for (const message of items) {
    const target = messageNode(message.role, message.content);
    if (message.role !== "assistant") continue;
    if (message.status === "streaming") {
      streaming = { messageId: message.id, text: message.content, target };
      setBusy(true);
      setStatus("Answering…");
      socket.send({ type: "chat.resume", message_id: message.id, offset: message.content.length });
      continue;
    }
    await renderFinal(target, message.content, message.citations);
    if (message.status === "cancelled") note(target, "Stopped.");
    if (message.status === "failed") note(target, message.error?.message || "The answer failed.", "failed");
  }
}

function newChat() {
  if (streaming) return;
  sessionId = null;
  markCurrent();
  title.textContent = "New chat";
  log.replaceChildren();
  question.focus();
}

function onToken(event) {
  if (!streaming || event.message_id !== streaming.messageId) return;
  const have = streaming.text.length;
  const start = event.offset ?? have;
  if (start > have) {
    // A gap (should not happen on one connection): ask for everything after what we have.
    socket.send({ type: "chat.resume", message_id: streaming.messageId, offset: have });
    return;
  }
  const fresh = event.delta.slice(have - start);
  if (!fresh) return;
  streaming.text += fresh;
  streaming.target.content.textContent = streaming.text;
  scrollDown();
}

async function onEnd(event) {
  if (!streaming || event.message_id !== streaming.messageId) return;
  const { target } = streaming;
  streaming = null;
  setBusy(false);
  await renderFinal(target, event.content, event.citations);
  if (event.status === "cancelled") {
    note(target, "Stopped.");
    setStatus("Stopped.");
  } else if (event.status === "failed") {
    note(target, event.error?.message || "The answer failed.", "failed");
    setStatus("The answer failed.");
  } else {
    setStatus("");
  }
  loadSessions().catch(() => {});
}

function onError(event) {
  const error = event.error || {};
  let text = error.message || "Something went wrong.";
  if (error.details?.retry_after) text += ` Try again in ${waitWords(Number(error.details.retry_after))}.`;
  if (streaming && !streaming.messageId) {
    note(streaming.target, text, "failed");
    streaming = null;
    setBusy(false);
  }
  setStatus(text);
}

function onEvent(event) {
  switch (event.type) {
    case "chat.start":
      if (!streaming) return;
      if (!streaming.messageId) streaming.messageId = event.message_id;
      if (event.session_id && event.session_id !== sessionId) {
        sessionId = event.session_id;
        title.textContent = event.session_title || "Chat";
        loadSessions().then(markCurrent).catch(() => {});
      }
      setStatus("Answering…");
      break;
    case "chat.token":
      onToken(event);
      break;
    case "chat.end":
      onEnd(event);
      break;
    case "error":
      onError(event);
      break;
    default:
  }
}

const socket = new LiveSocket({
  onEvent,
  onOpen: ({ reconnected }) => {
    if (reconnected && streaming?.messageId) {
      setStatus("Reconnected: resuming the answer…");
      socket.send({ type: "chat.resume", message_id: streaming.messageId, offset: streaming.text.length });
    }
  },
  onState: (state) => {
    if (state === "closed" && streaming) setStatus("Connection lost: reconnecting…");
  },
  busy: () => Boolean(streaming && !streaming.messageId),
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const content = question.value.trim();
  if (!content || streaming) {
    if (!content) question.focus();
    return;
  }
  messageNode("user", content);
  const target = messageNode("assistant", "");
  streaming = { messageId: null, text: "", target };
  setBusy(true);
  setStatus("Sending…");
  const frame = { type: "chat.message", content };
  if (sessionId) frame.session_id = sessionId;
  if (projectSelect.value) frame.project = projectSelect.value;
  const chosen = [...docsBox.querySelectorAll("input:checked")].map((box) => box.value);
  if (chosen.length) frame.document_ids = chosen;
  socket.send(frame);
  question.value = "";
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => {
  if (!streaming) return;
  socket.send({ type: "chat.cancel", ...(streaming.messageId ? { message_id: streaming.messageId } : {}) });
  setStatus("Stopping…");
});

document.getElementById("new-chat").addEventListener("click", newChat);

async function loadScope() {
  const projects = await api("/projects/?page_size=100");
  for (const project of projects.results) projectSelect.append(el("option", { value: project.id }, project.name));
  await loadScopeDocuments();
}

async function loadScopeDocuments() {
  const query = new URLSearchParams({ page_size: "100", status: "ready" });
  if (projectSelect.value) query.set("project", projectSelect.value);
  const data = await api(`/documents/?${query}`);
  const legend = docsBox.querySelector("legend");
  docsBox.replaceChildren(legend);
  for (const doc of data.results) {
    const id = `doc-${doc.id}`;
    docsBox.append(el("label", { for: id }, el("input", { type: "checkbox", id, value: doc.id }), " ", el("span", { dir: "auto" }, doc.title)));
  }
  if (!data.results.length) docsBox.append(el("p", { class: "muted" }, "No ready documents here yet."));
}

projectSelect.addEventListener("change", () => loadScopeDocuments().catch((error) => toast(error.message)));

async function start() {
  await loadSessions();
  await loadScope();
  if (sessionId) await openSession(sessionId, sessionList.querySelector(`li[data-id="${sessionId}"] a`)?.textContent);
  else question.focus();
}

start().catch((error) => toast(error.message));
