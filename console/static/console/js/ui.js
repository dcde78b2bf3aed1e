// Small helpers shared by the pages: building elements, messages, sizes.
import { signOut } from "./session.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function toast(text, ms = 4000) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    box.textContent = "";
  }, ms);
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatNumber(value) {
  return new Intl.NumberFormat().format(value || 0);
}

export function setupShell() {
  const button = document.getElementById("sign-out");
  if (button) button.addEventListener("click", () => signOut());
}

export function reportError(target, error) {
  const message = error && error.message ? error.message : String(error);
  if (target) target.textContent = message;
  else toast(message);
}
