import { api } from "./session.js";
import { el, formatNumber, setupShell, toast } from "./ui.js";

setupShell();

const SVG = "http://www.w3.org/2000/svg";
const WINDOWS = [
  ["last_24h", "Last 24 hours"],
  ["last_7d", "Last 7 days"],
];
const PARTS = [
  ["prompt_tokens", "Prompt", "#2f5d8a"],
  ["completion_tokens", "Answer", "#6f9bc7"],
  ["embedding_tokens", "Embedding", "#b9cfe4"],
];

function svg(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text) node.textContent = text;
  return node;
}

/** Stacked bars of the two windows' tokens by kind, drawn as inline SVG (no library, no canvas). */
function chart(data) {
  const width = 520;
  const rowHeight = 34;
  const left = 120;
  const height = WINDOWS.length * rowHeight + 44;
  const max = Math.max(1, ...WINDOWS.map(([key]) => data[key].total_tokens));
  const scale = (width - left - 20) / max;
  const summary = WINDOWS.map(([key, label]) => `${label}: ${formatNumber(data[key].total_tokens)} tokens`).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Tokens used. ${summary}` });
  root.append(svg("title", {}, `Tokens used. ${summary}`));
  WINDOWS.forEach(([key, label], row) => {
    const y = 8 + row * rowHeight;
    root.append(svg("text", { x: 0, y: y + 16, "font-size": 13, fill: "#1d2733" }, label));
    let x = left;
    for (const [field, name, color] of PARTS) {
      const w = data[key][field] * scale;
      if (w > 0) {
        const bar = svg("rect", { x, y, width: Math.max(w, 1), height: 22, fill: color, rx: 2 });
        bar.append(svg("title", {}, `${label}, ${name}: ${formatNumber(data[key][field])} tokens`));
        root.append(bar);
      }
      x += w;
    }
    root.append(svg("text", { x: Math.min(x + 6, width - 60), y: y + 17, "font-size": 12, fill: "#5b6775" }, formatNumber(data[key].total_tokens)));
  });
  let x = left;
  const legendY = height - 12;
  for (const [, name, color] of PARTS) {
    root.append(svg("rect", { x, y: legendY - 10, width: 12, height: 12, fill: color, rx: 2 }));
    root.append(svg("text", { x: x + 16, y: legendY, "font-size": 12, fill: "#1d2733" }, name));
    x += 110;
  }
  return root;
}

function windowCard(data, key, label) {
  const values = data[key];
  return el(
    "section",
    { class: "card", "aria-labelledby": `${key}-h` },
    el("h2", { id: `${key}-h` }, label),
    el(
      "dl",
      {},
      el("dt", {}, "Requests"), el("dd", {}, formatNumber(values.requests)),
      el("dt", {}, "Prompt tokens"), el("dd", {}, formatNumber(values.prompt_tokens)),
      el("dt", {}, "Answer tokens"), el("dd", {}, formatNumber(values.completion_tokens)),
      el("dt", {}, "Embedding tokens"), el("dd", {}, formatNumber(values.embedding_tokens)),
      el("dt", {}, "All tokens"), el("dd", {}, formatNumber(values.total_tokens)),
    ),
  );
}

function quotaCard(data) {
  const card = el("section", { class: "card", "aria-labelledby": "quota-h" }, el("h2", { id: "quota-h" }, "Today's quota"));
  const quotas = Object.values(data.quota || {});
  if (data.remaining_today === null || data.remaining_today === undefined) {
    card.append(el("p", {}, "No daily limit."));
  } else {
    card.append(el("p", {}, el("strong", {}, formatNumber(data.remaining_today)), " tokens left today."));
  }
  for (const quota of quotas) {
    const name = quota.scope === "tenant" ? "Workspace" : "You";
    if (quota.limit === null) {
      card.append(el("p", { class: "muted" }, `${name}: ${formatNumber(quota.used)} used, no limit.`));
      continue;
    }
    const share = Math.min(100, Math.round((quota.used / quota.limit) * 100));
    const fill = el("span");
    fill.style.width = `${share}%`;
    card.append(
      el("p", { class: "muted" }, `${name}: ${formatNumber(quota.used)} of ${formatNumber(quota.limit)} used (${share}%).`),
      el("div", { class: "meter", role: "meter", "aria-label": `${name} quota used`, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(share) }, fill),
    );
  }
  const reset = quotas[0]?.resets_at;
  if (reset) card.append(el("p", { class: "muted" }, `Resets at ${new Date(reset).toLocaleString()}.`));
  return card;
}

async function start() {
  const data = await api("/usage/");
  const box = document.getElementById("usage");
  box.replaceChildren(
    el("section", { class: "card wide", "aria-labelledby": "chart-h" }, el("h2", { id: "chart-h" }, "Tokens"), chart(data)),
    ...WINDOWS.map(([key, label]) => windowCard(data, key, label)),
    quotaCard(data),
  );
  box.setAttribute("aria-busy", "false");
}

start().catch((error) => toast(error.message));
