import { ApiError, api } from "./session.js";
import { LiveSocket } from "./socket.js";
import { el, formatBytes, setupShell, toast } from "./ui.js";

setupShell();

const MAX_MB = Number(document.body.dataset.maxUploadMb || 25);
const PROJECT_KEY = "documind.project";
const projectSelect = document.getElementById("project");
const tbody = document.querySelector("#documents tbody");
const empty = document.getElementById("documents-empty");
const messages = document.getElementById("upload-messages");
const dropzone = document.getElementById("dropzone");
const input = document.getElementById("upload");
const rows = new Map();
const earlyEvents = new Map(); // events of an upload whose answer has not arrived yet

const STATUS_WORDS = { pending: "Waiting", processing: "Processing", ready: "Ready", failed: "Failed" };

function message(text, kind = "info", replacing = null) {
  const item = el("li", { class: kind, text });
  if (replacing && replacing.isConnected) replacing.replaceWith(item);
  else messages.prepend(item);
  while (messages.children.length > 8) messages.lastChild.remove();
  return item;
}

function statusCell(doc) {
  const cell = el("span", { class: `status ${doc.status}` }, STATUS_WORDS[doc.status] || doc.status);
  const parts = [cell];
  if (doc.status === "processing" || doc.status === "pending") {
    if (doc.stage) parts.push(el("span", { class: "muted" }, ` · ${doc.stage}`));
    if (doc.status === "processing") {
      parts.push(" ", el("progress", { max: "100", value: String(doc.progress || 0), "aria-label": `${doc.title} progress` }));
    }
  }
  if (doc.status === "failed" && doc.error) parts.push(el("div", { class: "error" }, doc.error.message || doc.error.type));
  return parts;
}

function renderRow(doc) {
  const existing = rows.get(doc.id);
  const row = el(
    "tr",
    { "data-id": doc.id, "data-status": doc.status },
    el("td", {}, el("span", { dir: "auto", title: doc.original_filename || "" }, doc.title)),
    el("td", { class: "num" }, formatBytes(doc.size)),
    el("td", { class: "num" }, doc.page_count ? String(doc.page_count) : "—"),
    el("td", { class: "status-cell" }, statusCell(doc)),
    el(
      "td",
      { class: "row-actions" },
      el("button", { type: "button", "aria-label": `Reprocess ${doc.title}`, onclick: () => reprocess(doc) }, "Reprocess"),
      " ",
      el("button", { type: "button", class: "danger", "aria-label": `Delete ${doc.title}`, onclick: () => remove(doc) }, "Delete"),
    ),
  );
  row.doc = doc;
  if (existing) existing.replaceWith(row);
  else tbody.prepend(row);
  rows.set(doc.id, row);
  empty.hidden = rows.size > 0;
}

async function loadProjects() {
  const data = await api("/projects/?page_size=100");
  const saved = localStorage.getItem(PROJECT_KEY) || "";
  for (const project of data.results) {
    projectSelect.append(el("option", { value: project.id, selected: project.id === saved }, project.name));
  }
}

async function loadDocuments() {
  const project = projectSelect.value;
  const query = new URLSearchParams({ page_size: "100", ordering: "created_at" });
  if (project) query.set("project", project);
  const data = await api(`/documents/?${query}`);
  tbody.replaceChildren();
  rows.clear();
  for (const doc of data.results) renderRow(doc);
  empty.hidden = rows.size > 0;
  document.getElementById("documents").dataset.loaded = "true";
}

async function refreshOne(id) {
  try {
    renderRow(await api(`/documents/${id}/`));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
}

async function reprocess(doc) {
  try {
    renderRow(await api(`/documents/${doc.id}/reprocess/`, { method: "POST" }));
    toast(`Processing “${doc.title}” again.`);
  } catch (error) {
    toast(error.message);
  }
}

async function remove(doc) {
  if (!window.confirm(`Delete “${doc.title}”? Its file and its passages are removed.`)) return;
  try {
    await api(`/documents/${doc.id}/`, { method: "DELETE" });
    rows.get(doc.id)?.remove();
    rows.delete(doc.id);
    empty.hidden = rows.size > 0;
    toast(`Deleted “${doc.title}”.`);
  } catch (error) {
    toast(error.message);
  }
}

async function upload(file) {
  const name = file.name || "file";
  if (file.size > MAX_MB * 1024 * 1024) {
    message(`“${name}” is ${formatBytes(file.size)}: the limit is ${MAX_MB} MB per file. It was not uploaded.`, "error");
    return;
  }
  if (file.size === 0) {
    message(`“${name}” is empty. It was not uploaded.`, "error");
    return;
  }
  const form = new FormData();
  form.append("file", file, name);
  if (projectSelect.value) form.append("project", projectSelect.value);
  const progress = message(`Uploading “${name}”…`);
  try {
    const doc = await api("/documents/", { method: "POST", form });
    if (doc.duplicate) {
      message(`“${name}” is already here: it is the same file as “${doc.title}”.`, "info", progress);
      if (!rows.has(doc.id)) renderRow(doc);
    } else {
      message(`“${name}” uploaded; it is being processed.`, "info", progress);
      renderRow(doc);
      const early = earlyEvents.get(doc.id);
      if (early) {
        earlyEvents.delete(doc.id);
        onEvent(early);
      }
    }
  } catch (error) {
    message(`“${name}” was not uploaded: ${error.message}`, "error", progress);
  }
}

function uploadAll(files) {
  for (const file of files) upload(file);
}

input.addEventListener("change", () => {
  uploadAll([...input.files]);
  input.value = "";
});
for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
}
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  uploadAll([...(event.dataTransfer?.files || [])]);
});

projectSelect.addEventListener("change", () => {
  localStorage.setItem(PROJECT_KEY, projectSelect.value);
  loadDocuments();
});

document.getElementById("new-project").addEventListener("submit", async (event) => {
  event.preventDefault();
  const nameInput = document.getElementById("project-name");
  const name = nameInput.value.trim();
  if (!name) {
    nameInput.focus();
    return;
  }
  try {
    const project = await api("/projects/", { method: "POST", json: { name } });
    projectSelect.append(el("option", { value: project.id }, project.name));
    projectSelect.value = project.id;
    nameInput.value = "";
    localStorage.setItem(PROJECT_KEY, project.id);
    toast(`Project “${project.name}” created.`);
    loadDocuments();
  } catch (error) {
    toast(error.message);
  }
});

function onEvent(event) {
  if (event.type !== "document.status") return;
  const row = rows.get(event.document_id);
  if (!row) {
    earlyEvents.set(event.document_id, event);
    return;
  }
  const doc = { ...row.doc, status: event.status, progress: event.progress, stage: event.stage, error: event.error };
  renderRow(doc);
  if (event.status === "ready" || event.status === "failed") {
    refreshOne(event.document_id); // pages and counts
    toast(event.status === "ready" ? `“${doc.title}” is ready.` : `“${doc.title}” failed: ${event.error?.message || ""}`);
  }
}

async function start() {
  await loadProjects();
  if (projectSelect.value === "" && localStorage.getItem(PROJECT_KEY)) localStorage.removeItem(PROJECT_KEY);
  await loadDocuments();
  new LiveSocket({
    onEvent,
    onOpen: ({ reconnected }) => {
      if (reconnected) loadDocuments(); // events sent while we were away
    },
  });
}

start().catch((error) => toast(error.message));
