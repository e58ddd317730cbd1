// The API client: the session (access + rotating refresh token) in localStorage, silent
// refresh before the access token expires (and once more on a 401), one refresh at a time
// across tabs (Web Locks), so a refresh token is never presented twice — the server would
// take a second use as theft and end the whole login.
const KEY = "opsflow.session";
const BASE = "/api/v1";
const listeners = new Set();
let session = load();
let timer = null;
let refreshing = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.body = body;
  }
}

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY));
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next));
  else localStorage.removeItem(KEY);
  schedule();
  for (const fn of listeners) fn(session);
}

window.addEventListener("storage", (event) => {
  if (event.key !== KEY) return;
  session = load();
  schedule();
  for (const fn of listeners) fn(session);
});

export function onSession(fn) {
  listeners.add(fn);
}

export function currentSession() {
  return session;
}

export function accessToken() {
  return session?.access ?? null;
}

function accept(tokens, previous) {
  return {
    access: tokens.access_token,
    accessExp: Date.now() + tokens.expires_in * 1000,
    refresh: tokens.refresh_token,
    user: tokens.user || previous?.user || null,
  };
}

function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const left = session.accessExp - Date.now();
  timer = setTimeout(() => refresh().catch(() => {}), Math.max(1000, left - Math.min(60000, left / 4)));
}

async function send(method, path, { body, token, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    if (raw) {
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  return fetch(BASE + path, init);
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function login(username, password) {
  const tokens = await parse(await send("POST", "/auth/login", { body: { username, password } }));
  save(accept(tokens, null));
  return session;
}

export function refresh() {
  if (!refreshing) refreshing = rotate().finally(() => { refreshing = null; });
  return refreshing;
}

async function rotate() {
  const known = session?.refresh;
  const run = async () => {
    const stored = load();
    if (!stored) {
      save(null);
      throw new ApiError(401, null);
    }
    if (stored.refresh !== known && stored.accessExp - Date.now() > 30000) {
      session = stored; // another tab has just rotated it
      schedule();
      return stored;
    }
    const response = await send("POST", "/auth/refresh", { body: { refresh_token: stored.refresh } });
    if (response.status === 401 || response.status === 400) {
      save(null);
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    save(accept(await parse(response), stored));
    return session;
  };
  return navigator.locks ? navigator.locks.request("opsflow-refresh", run) : run();
}

export async function ensureFresh() {
  if (!session) throw new ApiError(401, null);
  if (session.accessExp - Date.now() < 15000) await refresh();
  return session.access;
}

export async function request(method, path, options = {}) {
  await ensureFresh();
  let response = await send(method, path, { ...options, token: session.access });
  if (response.status === 401) {
    await refresh();
    response = await send(method, path, { ...options, token: session.access });
  }
  return parse(response);
}

export const get = (path) => request("GET", path);

export async function logout() {
  const ending = session;
  if (ending) {
    await send("POST", "/auth/logout", {
      token: ending.access,
      body: { refresh_token: ending.refresh },
    }).catch(() => null);
  }
  save(null);
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    search.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A file the API serves behind authentication, saved under `name` (through a blob: URL).
export async function download(path, name) {
  const token = await ensureFresh();
  const response = await fetch(BASE + path, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// PUT one upload chunk with XMLHttpRequest, which reports the bytes sent as they go.
export async function putChunk(path, blob, onProgress) {
  const token = await ensureFresh();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", BASE + path);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, null)));
    xhr.send(blob);
  });
}
