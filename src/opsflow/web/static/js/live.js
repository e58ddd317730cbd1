// The live event stream (WS /api/v1/ws): authenticates with the first frame, subscribes to
// every task event the user may read ("tasks"), and after a dropped connection reconnects
// with growing pauses and subscribes with `since` = the last event id received, so the
// server replays what was missed (in order, none twice). The state — connecting, live,
// reconnecting — is shown in the header.
import { accessToken, ensureFresh, onSession } from "./api.js";

const CHANNELS = ["tasks"];
const handlers = new Set();
const stateHandlers = new Set();
let socket = null;
let lastId = null;
let state = "offline";
let stopped = true;
let pause = 500;
let retry = null;

export function onEvent(fn) {
  handlers.add(fn);
  return () => handlers.delete(fn);
}

export function onState(fn) {
  stateHandlers.add(fn);
  fn(state);
}

export function liveState() {
  return state;
}

function setState(next) {
  state = next;
  for (const fn of stateHandlers) fn(next);
}

function emit(frame) {
  for (const fn of handlers) {
    try {
      fn(frame);
    } catch (error) {
      console.warn("live handler failed", error);
    }
  }
}

export function start() {
  if (!stopped) return;
  stopped = false;
  connect();
}

export function stop() {
  stopped = true;
  clearTimeout(retry);
  const closing = socket;
  socket = null;
  lastId = null;
  closing?.close(1000);
  setState("offline");
}

async function connect() {
  if (stopped) return;
  setState(lastId === null && state !== "reconnecting" ? "connecting" : "reconnecting");
  try {
    await ensureFresh();
  } catch {
    stopped = true;
    setState("offline");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
  socket = ws;
  let replayed = false;
  ws.addEventListener("open", () => {
    ws.send(JSON.stringify({ action: "auth", token: accessToken() }));
  });
  ws.addEventListener("message", (message) => {
    if (socket !== ws) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (frame.type === "auth.ok") {
      if (state === "live") return; // a renewed token
      const subscribe = { action: "subscribe", channels: CHANNELS };
      if (lastId !== null) {
        subscribe.since = lastId;
        replayed = true;
      }
      ws.send(JSON.stringify(subscribe));
    } else if (frame.type === "subscribed") {
      if (state === "live") return;
      const resumed = state === "reconnecting";
      pause = 500;
      setState("live");
      if (resumed) emit({ type: "live.resumed", replayed });
    } else if (frame.type === "replay.truncated") {
      lastId = frame.last_id;
      ws.send(JSON.stringify({ action: "subscribe", channels: CHANNELS, since: lastId }));
    } else if (typeof frame.id === "number") {
      if (lastId !== null && frame.id <= lastId) return;
      lastId = frame.id;
      emit(frame);
    }
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    if (stopped) return;
    setState("reconnecting");
    if (event.code === 4401) pause = Math.max(pause, 1000);
    retry = setTimeout(connect, pause);
    pause = Math.min(pause * 2, 10000);
  });
}

// A rotated access token goes to the open socket, which would be closed at the old
// token's expiry otherwise.
onSession((session) => {
  if (session && socket && socket.readyState === WebSocket.OPEN && state === "live") {
    socket.send(JSON.stringify({ action: "auth", token: session.access }));
  }
});
