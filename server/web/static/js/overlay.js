// OBS browser-source overlays: /overlay/{sessionId}/chat|poll|reactions.
//
// A transparent page with no controls. It reads like an anonymous fan: a guest token (so it
// follows the session's public rules: a session that does not allow guests shows nothing),
// then the same live connection as the fans' page, and it never gives up: a refused or lost
// connection is retried with a fresh token, backing off to 30 s. Looks come from the query.

import { SessionConnection, api } from "./client.js";
import {
  BACKOFF,
  backoffDelay,
  chatSegments,
  deletionMatches,
  isPollTally,
  resultShares,
} from "./protocol.js";
import { PLATFORM_NAMES, addReactionTotals, animateBurst, el } from "./ui.js";

const KINDS = new Set(["chat", "poll", "reactions"]);
const PLATFORM_COLOURS = {
  twitch: "#bf94ff",
  youtube: "#ff4e45",
  tiktok: "#25f4ee",
  discord: "#8ea1f1",
  audifi: "#ffd166",
};
const FOREVER = { ...BACKOFF, retries: Number.POSITIVE_INFINITY };

const parts = location.pathname.split("/");
const sessionId = decodeURIComponent(parts[2] ?? "");
const kind = KINDS.has(parts[3]) ? parts[3] : "chat";
const root = document.getElementById("overlay");
const reduceMotion = matchMedia("(prefers-reduced-motion: reduce)").matches;

/** The overlay's options from its query string, each checked (a bad value keeps the default). */
export function overlayOptions(search) {
  const q = new URLSearchParams(search);
  const colour = (name) => {
    const value = q.get(name) ?? "";
    return /^[0-9a-fA-F]{3,8}$/.test(value) && value.length !== 5 && value.length !== 7
      ? `#${value}`
      : null;
  };
  const number = (name, low, high) => {
    const value = Number(q.get(name));
    return q.has(name) && Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : null;
  };
  const font = q.get("font");
  const platforms = (q.get("platforms") ?? "").split(",").map((p) => p.trim()).filter(Boolean);
  return {
    fontSize: number("fontSize", 8, 160),
    color: colour("color"),
    background: colour("background"),
    accent: colour("accent"),
    nameColor: colour("nameColor"),
    font: font && /^[\w\s-]{1,60}$/.test(font) ? font : null,
    maxLines: number("maxLines", 1, 100) ?? 8,
    fade: number("fade", 0, 3600) ?? 0,
    linger: number("linger", 0, 3600) ?? 15,
    align: q.get("align") === "right" ? "flex-end" : q.get("align") === "center" ? "center" : null,
    platforms: new Set(platforms),
    totals: q.get("totals") === "1",
    debug: q.get("debug") === "1",
  };
}

const options = overlayOptions(location.search);

function applyLook() {
  const style = document.documentElement.style;
  const set = (name, value) => value != null && style.setProperty(name, value);
  set("--font-size", options.fontSize != null ? `${options.fontSize}px` : null);
  set("--color", options.color);
  set("--background", options.background);
  set("--accent", options.accent);
  set("--font", options.font ? `"${options.font}", system-ui, sans-serif` : null);
  set("--align", options.align);
  document.documentElement.classList.add(`overlay-${kind}`);
}

// --- chat ------------------------------------------------------------------------------------

const lines = [];

function addMessage(message) {
  if (!message || !message.text) return;
  if (options.platforms.size && !options.platforms.has(message.platform)) return;
  if (lines.some((line) => line.message.id === message.id)) return;
  const name = message.displayName || message.username || "";
  const text = el("span", { className: "text" });
  for (const segment of chatSegments(message.text, message.emotes)) {
    if (segment.emote) {
      const { url, name: alt } = segment.emote;
      text.append(el("img", { className: "emote", src: url, alt }));
    } else {
      text.append(segment.text);
    }
  }
  const nameNode = el("span", { className: "name", text: name });
  nameNode.style.color = options.nameColor ?? PLATFORM_COLOURS[message.platform] ?? "inherit";
  const node = el(
    "div",
    { className: "line", dataset: { id: message.id ?? "", platform: message.platform ?? "" } },
    el("span", {
      className: "platform",
      text: PLATFORM_NAMES[message.platform] ?? message.platform,
    }),
    nameNode,
    text,
  );
  root.append(node);
  lines.push({ message, node });
  while (lines.length > options.maxLines) lines.shift().node.remove();
  if (options.fade > 0) {
    setTimeout(() => node.classList.add("fading"), options.fade * 1000);
    setTimeout(() => drop(node), options.fade * 1000 + 700);
  }
}

function drop(node) {
  const index = lines.findIndex((line) => line.node === node);
  if (index >= 0) lines.splice(index, 1);
  node.remove();
}

function removeMessages(deletion) {
  for (const line of [...lines]) {
    if (deletionMatches(deletion, line.message)) drop(line.node);
  }
}

// --- poll ------------------------------------------------------------------------------------

let poll = null;
let hideTimer = null;

function showPoll(next) {
  clearTimeout(hideTimer);
  poll = next && Array.isArray(next.options) ? { ...next, results: next.results ?? [] } : null;
  renderPoll();
}

function renderPoll() {
  root.replaceChildren();
  if (!poll) return;
  const shares = resultShares(poll.results);
  const total = (poll.results ?? []).reduce((a, b) => a + (Number(b) || 0), 0);
  const items = poll.options.map((label, index) => {
    const bar = el("span", { className: "bar" });
    bar.style.width = `${shares[index] ?? 0}%`;
    const dataset = { index: String(index), count: String(poll.results[index] ?? 0) };
    return el(
      "li",
      { className: "option", dataset },
      bar,
      el("span", { className: "label", text: label }),
      el("span", { className: "share", text: `${Math.round(shares[index] ?? 0)}%` }),
    );
  });
  const ended = poll.status === "ended";
  root.append(
    el(
      "section",
      { className: "poll", dataset: { status: ended ? "ended" : "active", pollId: poll.id ?? "" } },
      el("p", { className: "question", text: poll.question ?? "" }),
      el("ol", {}, ...items),
      el("p", {
        className: "total",
        text: `${total} vote${total === 1 ? "" : "s"}${ended ? " · final" : ""}`,
      }),
    ),
  );
}

function pollResults(update, final) {
  if (!poll || (update.pollId ?? update.id) !== poll.id) return;
  if (poll.status === "ended" && !final) return;
  poll.results = update.results ?? poll.results;
  if (final) {
    poll.status = "ended";
    if (options.linger >= 0) hideTimer = setTimeout(() => showPoll(null), options.linger * 1000);
  }
  renderPoll();
}

// --- reactions -------------------------------------------------------------------------------

const totals = new Map();
const totalsNode = el("div", { className: "totals", hidden: true });

function burst(counts) {
  animateBurst(root, counts, reduceMotion);
  if (!options.totals) return;
  addReactionTotals(totals, counts);
  totalsNode.hidden = false;
  totalsNode.replaceChildren(
    ...[...totals].map(([emoji, n]) => el("span", { dataset: { emoji } }, `${emoji} ${n}`)),
  );
}

// --- events ----------------------------------------------------------------------------------

function onFrame(frame) {
  const p = frame.payload ?? {};
  switch (frame.type) {
    case "session.state":
      if (kind === "poll") showPoll(p.activePoll ?? null);
      if (kind === "chat") for (const m of p.chat ?? p.recentChat ?? []) addMessage(m);
      break;
    case "chat.aggregate":
      if (kind === "chat") for (const m of p.messages ?? []) addMessage(m);
      break;
    case "chat.message":
      if (kind === "chat") addMessage(p);
      break;
    case "chat.delete":
      if (kind === "chat") removeMessages(p);
      break;
    case "poll.create":
      if (kind === "poll") showPoll(p.poll ?? p);
      break;
    case "poll.update":
      if (kind !== "poll") break;
      if (isPollTally(p)) pollResults(p, false);
      else if (poll && (p.id ?? p.pollId) === poll.id) showPoll({ ...poll, ...p });
      break;
    case "poll.results":
      if (kind === "poll") pollResults(p, true);
      break;
    case "poll.end":
      if (kind === "poll" && poll && (p.id ?? p.pollId) === poll.id && poll.status !== "ended") {
        poll.status = "ended";
        renderPoll();
      }
      break;
    case "reaction.burst":
      if (kind === "reactions") burst(p.counts);
      break;
    default:
      break;
  }
}

// --- connection: forever ---------------------------------------------------------------------

let attempt = 0;

function setState(state, reason = "") {
  document.body.dataset.state = state;
  document.body.dataset.reason = reason;
  if (options.debug) document.title = `${kind} overlay: ${state} ${reason}`;
}

function later() {
  const wait = backoffDelay(attempt, Math.random, FOREVER);
  attempt += 1;
  setTimeout(connect, wait);
}

async function connect() {
  let token;
  try {
    token = (await api("/v1/auth/guest", { method: "POST", body: { sessionId } })).token;
  } catch (error) {
    setState("waiting", error.message ?? "");
    later();
    return;
  }
  const conn = new SessionConnection({ sessionId, token, options: { backoff: FOREVER } });
  conn.addEventListener("frame", (event) => onFrame(event.detail));
  conn.addEventListener("state", (event) => {
    const { state, message } = event.detail;
    setState(state, message ?? "");
    if (state === "live" || state === "sse" || state === "resumed") attempt = 0;
    if (state === "failed") {
      conn.stop(); // a refusal (token expired, session not found yet...): start over, later
      later();
    }
  });
  conn.start();
}

applyLook();
if (kind === "reactions") document.body.append(totalsNode);
setState("connecting");
connect();
