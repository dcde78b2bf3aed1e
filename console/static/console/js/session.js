// The console's session: the access token lives in this module's memory only; the refresh token is
// in an HttpOnly cookie that only /console/auth/* can use. Every API call goes through api().

const body = document.body;
const WORKSPACE_KEY = "documind.workspace";
let access = null;
let accessExpires = 0;
let inflight = null;
let currentUser = null;

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export function workspace() {
  return body.dataset.workspace || localStorage.getItem(WORKSPACE_KEY) || "";
}

export function rememberWorkspace(slug) {
  localStorage.setItem(WORKSPACE_KEY, slug);
}

export function user() {
  return currentUser;
}

export class ApiError extends Error {
  constructor(status, type, message, details = {}, retryAfter = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.details = details || {};
    this.retryAfter = retryAfter;
  }
}

/** When a JWT expires (ms since the epoch; 0 when unreadable). */
export function expiryOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).exp * 1000;
  } catch {
    return 0;
  }
}

function setAccess(token) {
  access = token;
  accessExpires = expiryOf(token);
}

/** A wait in words: "40 seconds", "12 minutes", "5 hours" (a 429's Retry-After, a quota's reset). */
export function waitWords(seconds) {
  if (seconds < 90) return `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 90) return `${minutes} minutes`;
  return `${Math.ceil(minutes / 60)} hours`;
}

export async function errorFrom(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  const error = (data && data.error) || {};
  const retry = Number(response.headers.get("Retry-After") || (error.details && error.details.retry_after) || 0);
  let message = error.message || `The server answered ${response.status}.`;
  if (response.status === 429 && retry) message = `${message} Try again in ${waitWords(retry)}.`;
  if (response.status === 413 && !error.message) message = "The file is too large.";
  return new ApiError(response.status, error.type || "error", message, error.details, retry || null);
}

async function postConsole(path, payload, headers = {}) {
  return fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), ...headers },
    body: JSON.stringify(payload || {}),
  });
}

/** Sign in with a password or a code; the server keeps the refresh token in its cookie. */
export async function signIn(slug, fields, { code = false } = {}) {
  const response = await postConsole(code ? "/console/auth/verify-code" : "/console/auth/login", fields, {
    "X-Tenant-ID": slug,
  });
  if (!response.ok) throw await errorFrom(response);
  const data = await response.json();
  rememberWorkspace(data.workspace || slug);
  setAccess(data.access);
  currentUser = data.user;
  return data;
}

export async function requestCode(slug, email) {
  const response = await fetch("/api/v1/auth/request-code", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Tenant-ID": slug },
    body: JSON.stringify({ email }),
  });
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

async function refreshNow() {
  const response = await fetch("/console/auth/refresh", {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken() },
  });
  if (!response.ok) throw await errorFrom(response);
  const data = await response.json();
  setAccess(data.access);
  currentUser = data.user;
  if (data.workspace) rememberWorkspace(data.workspace);
  return data.access;
}

/** A new access token. Tabs of this browser take turns (Web Locks), so none presents a used cookie. */
let signingOut = false;

export function refresh() {
  if (signingOut) return Promise.reject(new ApiError(401, "authentication_failed", "Signed out."));
  if (!inflight) {
    const run = () => refreshNow();
    const locked = navigator.locks ? navigator.locks.request("documind-refresh", run) : run();
    inflight = locked.finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

function signedOut() {
  const next = location.pathname + location.search;
  location.assign("/console/?" + new URLSearchParams({ next }).toString());
}

/** The access token, refreshed when it is missing or about to expire. */
export async function accessToken() {
  if (access && accessExpires - Date.now() > 30_000) return access;
  try {
    return await refresh();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut();
    throw error;
  }
}

/** Call /api/v1{path} with the workspace and the bearer; JSON in and out, errors as ApiError. */
export async function api(path, { method = "GET", json, form, signal } = {}) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const token = await accessToken();
    const headers = { "X-Tenant-ID": workspace(), Authorization: `Bearer ${token}` };
    let requestBody;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      requestBody = JSON.stringify(json);
    } else if (form) {
      requestBody = form;
    }
    const response = await fetch(`/api/v1${path}`, { method, headers, body: requestBody, signal });
    if (response.status === 401 && attempt === 0) {
      access = null; // expired or revoked: refresh once and try again
      continue;
    }
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return null;
    return response.json();
  }
  throw new ApiError(401, "authentication_failed", "Your session has ended: sign in again.");
}

export async function signOut() {
  signingOut = true;
  try {
    // Not while a refresh is in flight (here or in another tab): its answer would set the cookie again.
    if (inflight) await inflight.catch(() => null);
    const run = () => postConsole("/console/auth/logout", {});
    await (navigator.locks ? navigator.locks.request("documind-refresh", run) : run());
  } finally {
    access = null;
    currentUser = null;
    location.assign("/console/");
  }
}
