// The session page: sign-in, the live connection, and what each event does to the page.

import { ApiError, SessionConnection, api } from "./client.js";
import {
  describeError,
  isPollTally,
  ledgerLine,
  muteKey,
  newRequestId,
  roleCandidates,
} from "./protocol.js";
import {
  ChatView,
  PollView,
  addReactionTotals,
  animateBurst,
  el,
  noticeItem,
  renderConnection,
  renderStream,
} from "./ui.js";
import { describeRequirements, provider, signInWithEthereum } from "./wallet.js";

const DEFAULT_REACTIONS = ["🔥", "❤️", "👏", "😂", "😮", "🎉", "💯", "🙌"];
const DEFAULT_CURRENCIES = ["USD", "EUR", "GBP", "JPY"];
const AUTH_KEY = "vstudio.auth";
const STAFF = new Set(["artist", "producer"]);
const SEES_GATED = new Set(["artist", "producer", "token_holder"]);

const $ = (id) => document.getElementById(id);
const sessionId = decodeURIComponent(location.pathname.split("/")[2] ?? "");
const query = new URLSearchParams(location.search);
const reduceMotion = matchMedia("(prefers-reduced-motion: reduce)").matches;

const page = {
  session: null,
  auth: null,
  role: null,
  roles: [],
  conn: null,
  ended: false,
  muted: new Set(),
  reactions: DEFAULT_REACTIONS,
  reactionTotals: new Map(),
  tipTotals: {},
  gateReason: "",
  ledgerTotals: {},
  ledgerSeen: new Set(),
};

const chat = new ChatView($("chat-list"), {
  onDelete: (message) =>
    act("chat.delete", { messageId: message.id }, "The message was not deleted").catch(() => {}),
  onMute: (message) => {
    const userId = muteKey(message);
    const muted = !page.muted.has(userId);
    const who =
      message.platform === "audifi" ? {} : { platform: message.platform, username: message.username };
    act("chat.mute", { userId, muted, ...who }, "The mute did not apply").catch(() => {});
  },
  isMuted: (userId) => page.muted.has(userId),
});
const poll = new PollView($("poll"), { onVote: vote });

// --- messages to the person ------------------------------------------------------------------

function alertText(text) {
  const line = el("p", { className: "alert", text });
  $("alerts").append(line);
  setTimeout(() => line.remove(), 8000);
  while ($("alerts").children.length > 3) $("alerts").firstElementChild.remove();
}

function showError(error, prefix = "") {
  const words = describeError(error);
  alertText(prefix ? `${prefix}: ${words}` : words);
}

async function act(type, payload, failure, options) {
  if (!page.conn) return null;
  try {
    return await page.conn.request(type, payload, options);
  } catch (error) {
    showError(error, failure);
    throw error;
  }
}

// --- sign-in ---------------------------------------------------------------------------------

function loadAuth() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(AUTH_KEY) ?? "null");
    if (!saved?.token) return null;
    if (saved.guest && saved.sessionId !== sessionId) return null;
    return saved;
  } catch {
    return null;
  }
}

function saveAuth(auth) {
  if (auth) sessionStorage.setItem(AUTH_KEY, JSON.stringify(auth));
  else sessionStorage.removeItem(AUTH_KEY);
}

function showSignIn(message = "") {
  $("signin").hidden = false;
  $("panel").hidden = true;
  $("guest-area").hidden = !page.session?.allowGuests;
  $("wallet-signin-area").hidden = !provider();
  $("signin-error").textContent = message;
  $("sign-out").hidden = true;
  $("who").textContent = "";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const answer = await api("/v1/auth/login", {
      method: "POST",
      body: { username: form.get("username"), password: form.get("password") },
    });
    join({ token: answer.token, user: answer.user, guest: false, sessionId });
  } catch (error) {
    $("signin-error").textContent =
      error.status === 401 ? "Wrong username or password." : describeError(error);
  }
});

$("guest-button").addEventListener("click", async () => {
  try {
    const answer = await api("/v1/auth/guest", { method: "POST", body: { sessionId } });
    join({ token: answer.token, user: answer.user, guest: true, sessionId });
  } catch (error) {
    $("signin-error").textContent = describeError(error);
  }
});

$("wallet-signin").addEventListener("click", async () => {
  try {
    const answer = await signInWithEthereum();
    join({ token: answer.token, user: answer.user, guest: false, sessionId, wallet: answer.address });
  } catch (error) {
    $("signin-error").textContent = describeError(error);
  }
});

$("connect-wallet").addEventListener("click", async () => {
  $("gate-status").textContent = "Waiting for your wallet…";
  try {
    const answer = await signInWithEthereum(page.auth?.token ?? null);
    if (!page.auth) {
      join({ token: answer.token, user: answer.user, guest: false, sessionId, wallet: answer.address });
      return;
    }
    page.auth = { ...page.auth, wallet: answer.address };
    saveAuth(page.auth);
    page.gateReason = "";
    $("gate-status").textContent = `Wallet ${answer.address} linked; checking its tokens…`;
    page.conn?.stop();
    page.roles = roleCandidatesWithGate(page.auth);
    connect(page.roles.shift());
  } catch (error) {
    $("gate-status").textContent = `The wallet was not linked: ${describeError(error)}`;
  }
});

function requiresTokens() {
  const required = page.session?.requiredTokens;
  return Array.isArray(required) ? required.length > 0 : Boolean(required);
}

/** The roles to try, strongest first: token_holder before viewer when a wallet is linked. */
function roleCandidatesWithGate(auth) {
  const roles = roleCandidates(auth.user, page.session);
  // the public record before sign-in does not say which tokens count: with a wallet linked,
  // ask; a session without requirements answers 4005 and the next role is tried
  if (!auth.wallet || auth.guest) return roles;
  const at = roles.indexOf("viewer");
  return [...roles.slice(0, at), "token_holder", ...roles.slice(at)];
}

function renderGate() {
  const gated = requiresTokens();
  $("gate").hidden = !gated;
  if (!gated) return;
  const privileged = SEES_GATED.has(page.role);
  $("gate-needs").textContent = `Holders of ${describeRequirements(page.session.requiredTokens).join(
    " and ",
  )} see gated polls.`;
  $("gate-locked").hidden = privileged;
  const hasWallet = Boolean(provider());
  $("connect-wallet").hidden = !hasWallet || page.role === "token_holder" || STAFF.has(page.role);
  $("no-wallet").hidden = hasWallet || privileged;
  if (page.role === "token_holder") {
    $("gate-status").textContent = "Your wallet holds the tokens: gated polls are open to you.";
  } else if (page.gateReason) {
    $("gate-status").textContent = `Token gate (4005): ${page.gateReason}`;
  }
  document.body.dataset.gate = privileged ? "open" : "locked";
}

$("sign-out").addEventListener("click", () => {
  page.conn?.stop();
  page.conn = null;
  saveAuth(null);
  page.auth = null;
  renderConnection($("conn"), { state: "idle" });
  showSignIn();
});

$("retry").addEventListener("click", () => {
  $("retry").hidden = true;
  page.conn?.retry();
});

function join(auth) {
  page.auth = auth;
  saveAuth(auth);
  $("signin").hidden = true;
  $("panel").hidden = false;
  $("sign-out").hidden = false;
  const name = auth.user?.username ?? auth.user?.id ?? "you";
  $("who").textContent = auth.guest ? `${name} (guest)` : name;
  page.roles = roleCandidatesWithGate(auth);
  connect(page.roles.shift());
}

function connect(role) {
  page.role = role;
  setStaff(STAFF.has(role));
  renderGate();
  const conn = new SessionConnection({
    sessionId,
    token: page.auth.token,
    role,
    options: {
      transport: query.get("transport") ?? "auto",
      // ?heartbeat=ms shortens the ping interval (and the wait for an answer) on slow links.
      ...(Number(query.get("heartbeat")) >= 1000
        ? {
            heartbeat: Number(query.get("heartbeat")),
            heartbeatTimeout: Number(query.get("heartbeat")) / 2,
          }
        : {}),
    },
  });
  page.conn = conn;
  conn.addEventListener("frame", (event) => onFrame(event.detail));
  conn.addEventListener("state", (event) => onState(conn, event.detail));
  conn.addEventListener("unauthorized", () => {
    saveAuth(null);
    page.conn = null;
    showSignIn("Your sign-in expired; please sign in again.");
  });
  conn.start();
}

function onState(conn, detail) {
  if (conn !== page.conn) return;
  if (detail.state === "failed" && page.role === "token_holder" && detail.error?.status === 403) {
    page.gateReason = detail.error?.message ?? detail.message ?? "token gate failed";
  }
  if (detail.state === "failed" && detail.error?.status === 403 && page.roles.length) {
    connect(page.roles.shift()); // that role is not ours here; try the next one
    return;
  }
  renderConnection($("conn"), detail);
  document.body.dataset.connection = detail.state;
  document.body.dataset.transport = conn.transport;
  $("retry").hidden = detail.state !== "failed";
  if (detail.state === "ended") markEnded();
  if (detail.state === "failed" && detail.message) alertText(detail.message);
}

function setStaff(staff) {
  $("controls").hidden = !staff;
  $("controls-title").textContent = page.role === "artist" ? "Artist controls" : "Producer controls";
  $("end-session").hidden = page.role !== "artist"; // session.end is the artist's alone
  chat.setStaff(staff);
  document.body.classList.toggle("staff", staff);
}

// --- events ----------------------------------------------------------------------------------

function onFrame(frame) {
  const p = frame.payload ?? {};
  switch (frame.type) {
    case "session.state":
      applyState(p);
      break;
    case "session.update":
      applySession({ ...page.session, ...p });
      break;
    case "session.join":
    case "session.leave":
      if (p.viewerCount != null) setViewers(p.viewerCount);
      break;
    case "session.end":
      markEnded();
      break;
    case "poll.create":
      showPoll(p.poll ?? p);
      break;
    case "poll.update": // a live tally {pollId, results, totalVotes}, or an edit of the poll
      if (isPollTally(p)) poll.results(p);
      else if (poll.poll && (p.id ?? p.pollId) === poll.poll.id) showPoll({ ...poll.poll, ...p });
      break;
    case "poll.end":
      if (poll.poll && (p.id ?? p.pollId) === poll.poll.id) {
        showPoll({ ...poll.poll, ...(p.poll ?? p), id: poll.poll.id, status: "ended" });
      }
      break;
    case "poll.results": // the final tally, once, when the poll ends
      poll.results({ ...p, final: true });
      break;
    case "chat.aggregate":
      chat.addMany(p.messages ?? []);
      break;
    case "chat.message":
      chat.add(p);
      break;
    case "chat.delete":
      chat.remove(p);
      break;
    case "chat.mute":
      if (p.muted) page.muted.add(p.userId);
      else page.muted.delete(p.userId);
      chat.setMuted(p.userId, Boolean(p.muted));
      if (p.userId === myId()) alertText(p.muted ? "You have been muted." : "You can chat again.");
      break;
    case "reaction.burst":
      animateBurst($("bursts"), p.counts, reduceMotion);
      addReactionTotals(page.reactionTotals, p.counts);
      paintReactionTotals();
      break;
    case "tip.received":
      addTip(p);
      break;
    case "platform.event":
      chat.list.append(noticeItem(p.kind, platformEventText(p)));
      addPlatformMoney(p);
      break;
    case "announcement": // an operator's (or the artist's) notice
      chat.list.append(noticeItem("announcement", `📣 ${p.text}`));
      alertText(`Announcement: ${p.text}`);
      break;
    case "error":
      showError(p);
      break;
    default:
      break;
  }
}

function myId() {
  return page.auth?.user?.id ?? page.auth?.user?.userId;
}

function applyState(p) {
  // the seed's fields (status, chatEnabled, reactionsEnabled) are at the top of the payload;
  // the full record, when the server sends one, fills in the rest (title, stream...)
  const session = p.session && typeof p.session === "object" ? p.session : {};
  applySession({ ...page.session, ...session, ...pickSession(p) });
  if (p.viewerCount != null) setViewers(p.viewerCount);
  page.muted = new Set(p.mutedUsers ?? []);
  if (Array.isArray(p.allowedReactions)) page.reactions = p.allowedReactions;
  renderReactionButtons();
  renderCurrencies(p.tipCurrencies ?? p.currencies ?? DEFAULT_CURRENCIES);
  if (p.chatMaxLength > 0) $("chat-input").maxLength = p.chatMaxLength;
  const totals = p.tipTotals ?? p.tips?.totals;
  if (totals) setTipTotals(totals);
  if (p.ledgerTotals) setLedgerTotals(p.ledgerTotals);
  const polls = p.polls ?? [];
  showPoll(p.activePoll ?? (polls.length ? polls[polls.length - 1] : null));
  chat.addMany(p.chat ?? p.recentChat ?? []);
  if (page.session?.status === "ended") markEnded();
}

function pickSession(p) {
  const fields = [
    "id", "artistId", "title", "streamUrl", "streamPlatform", "status", "chatEnabled",
    "reactionsEnabled", "allowGuests", "producerIds", "scheduledStart", "actualStart", "endedAt",
  ];
  return Object.fromEntries(fields.filter((f) => f in p).map((f) => [f, p[f]]));
}

function applySession(session) {
  const streamChanged = session.streamUrl !== page.session?.streamUrl || !page.rendered;
  page.session = session;
  $("title").textContent = session.title || "V Studio";
  document.title = session.title ? `${session.title} · V Studio` : "V Studio";
  if (streamChanged) {
    renderStream($("stream"), session);
    page.rendered = true;
  }
  const chatOn = session.chatEnabled !== false;
  const reactionsOn = session.reactionsEnabled !== false;
  $("chat-off").hidden = chatOn;
  $("chat-form").hidden = !chatOn;
  $("reactions-off").hidden = reactionsOn;
  $("reaction-buttons").hidden = !reactionsOn;
  setPressed($("toggle-chat"), chatOn, "Chat on", "Chat off");
  setPressed($("toggle-reactions"), reactionsOn, "Reactions on", "Reactions off");
  const holdersOnly = session.chatHoldersOnly === true;
  setPressed($("toggle-holders-chat"), holdersOnly, "Chat: holders only", "Chat: everyone");
  const chatLocked = chatOn && holdersOnly && !SEES_GATED.has(page.role);
  $("chat-holders").hidden = !chatLocked;
  if (chatLocked) $("chat-form").hidden = true;
  renderGate();
  if (session.status === "ended") markEnded();
  showScheduled(session.status === "scheduled");
}

// The server announces no start event, so a page on a scheduled session looks again now and
// then until it is live.
let startWatch = null;
function showScheduled(scheduled) {
  $("scheduled").hidden = !scheduled;
  if (!scheduled) {
    clearInterval(startWatch);
    startWatch = null;
  } else if (!startWatch) {
    startWatch = setInterval(async () => {
      try {
        const fresh = await api(`/web/sessions/${encodeURIComponent(sessionId)}`);
        if (fresh.status !== "scheduled") applySession({ ...page.session, ...fresh });
      } catch {
        /* try again next time */
      }
    }, 5000);
  }
}

function setPressed(button, on, onText, offText) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.textContent = on ? onText : offText;
}

function setViewers(count) {
  $("viewer-count").textContent = String(count);
}

function markEnded() {
  if (page.ended) return;
  page.ended = true;
  $("ended").hidden = false;
  document.body.classList.add("session-ended");
  setViewers(0);
  for (const node of document.querySelectorAll("#panel button, #panel input, #panel select")) {
    node.disabled = true;
  }
  renderConnection($("conn"), { state: "ended" });
  document.body.dataset.connection = "ended";
  page.conn?.end({});
}

// --- polls -----------------------------------------------------------------------------------

function votesKey(pollId) {
  return `vstudio.votes.${myId()}.${pollId}`;
}

function rememberedVotes(pollId) {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(votesKey(pollId)) ?? "[]"));
  } catch {
    return new Set();
  }
}

function showPoll(data) {
  poll.show(data, data ? rememberedVotes(data.id) : new Set());
  $("poll-gated").hidden = !data?.gated;
  $("end-poll").disabled = !data || data.status === "ended" || page.ended;
}

async function vote(index) {
  const current = poll.poll;
  if (!current) return;
  try {
    await act("poll.vote", { pollId: current.id, optionIndex: index }, "Your vote was not counted");
  } catch (error) {
    if (!(error instanceof ApiError) || !/already/i.test(error.message)) return;
  }
  const voted = rememberedVotes(current.id);
  voted.add(index);
  sessionStorage.setItem(votesKey(current.id), JSON.stringify([...voted]));
  if (poll.poll?.id === current.id) poll.markVoted(index);
}

$("poll-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const options = String(form.get("options"))
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  const payload = {
    question: String(form.get("question")).trim(),
    options,
    allowMultiple: form.get("allowMultiple") === "on",
  };
  if (form.get("gated") === "on") payload.gated = true;
  const duration = Number(form.get("duration"));
  if (duration) payload.duration = duration;
  try {
    await act("poll.create", payload, "The poll was not started");
    event.target.reset();
  } catch {
    /* shown */
  }
});

$("end-poll").addEventListener("click", () => {
  if (poll.poll) act("poll.end", { pollId: poll.poll.id }, "The poll did not end").catch(() => {});
});

// --- producer controls -----------------------------------------------------------------------

$("toggle-chat").addEventListener("click", () => {
  const on = page.session?.chatEnabled !== false;
  act("session.update", { chatEnabled: !on }, "Chat was not changed").catch(() => {});
});

$("toggle-holders-chat").addEventListener("click", () => {
  const on = page.session?.chatHoldersOnly === true;
  act("session.update", { chatHoldersOnly: !on }, "Chat was not changed").catch(() => {});
});

$("toggle-reactions").addEventListener("click", () => {
  const on = page.session?.reactionsEnabled !== false;
  act("session.update", { reactionsEnabled: !on }, "Reactions were not changed").catch(() => {});
});

let endArmed = null;
$("end-session").addEventListener("click", () => {
  const button = $("end-session");
  if (!endArmed) {
    button.textContent = "Really end the session?";
    endArmed = setTimeout(() => {
      endArmed = null;
      button.textContent = "End session";
    }, 5000);
    return;
  }
  clearTimeout(endArmed);
  endArmed = null;
  button.textContent = "Ending…";
  act("session.end", {}, "The session did not end").catch(() => {
    button.textContent = "End session";
  });
});

// --- chat, reactions, tips -------------------------------------------------------------------

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  try {
    await act("chat.message", { text }, "Your message was not sent");
    input.value = "";
  } catch {
    /* shown */
  }
});

function renderReactionButtons() {
  const box = $("reaction-buttons");
  if (box.dataset.set === page.reactions.join(" ")) return;
  box.dataset.set = page.reactions.join(" ");
  box.replaceChildren(
    ...page.reactions.map((emoji) =>
      el(
        "button",
        {
          type: "button",
          className: "reaction",
          dataset: { emoji },
          "aria-label": `React with ${emoji}`,
          onclick: () => act("reaction.send", { emoji }, "Reaction not sent").catch(() => {}),
        },
        el("span", { className: "emoji", text: emoji, "aria-hidden": "true" }),
        el("span", { className: "total", text: "" }),
      ),
    ),
  );
  paintReactionTotals();
}

function paintReactionTotals() {
  for (const button of $("reaction-buttons").querySelectorAll(".reaction")) {
    const total = page.reactionTotals.get(button.dataset.emoji);
    button.querySelector(".total").textContent = total ? String(total) : "";
  }
}

function renderCurrencies(currencies) {
  const select = $("tip-form").elements.currency;
  if ([...select.options].map((o) => o.value).join() === currencies.join()) return;
  select.replaceChildren(...currencies.map((c) => el("option", { value: c, text: c })));
}

function setTipTotals(totals) {
  page.tipTotals = { ...totals };
  const parts = Object.entries(page.tipTotals)
    .filter(([, amount]) => Number(amount) > 0)
    .map(([currency, amount]) => `${formatMoney(amount, currency)}`);
  $("tip-totals").textContent = parts.length ? `Tips: ${parts.join(" · ")}` : "";
}

function setLedgerTotals(totals) {
  page.ledgerTotals = structuredClone(totals);
  const line = ledgerLine(page.ledgerTotals, formatMoney);
  $("money-totals").textContent = line ? `Cheers & gifts: ${line}` : "";
}

/** A cheer, Super Chat or TikTok gift adds to its platform's total, once per event id; not a
 * cheer sent in another channel of a shared chat (that artist's money, as in the ledger). */
function addPlatformMoney(p) {
  if (!Number.isInteger(p.amountMinor) || !p.currency || page.ledgerSeen.has(p.id)) return;
  if (p.sourceChannel) return;
  page.ledgerSeen.add(p.id);
  const places = { JPY: 0, KRW: 0, BHD: 3, KWD: 3, BITS: 0, DIAMONDS: 0 }[p.currency] ?? 2;
  const totals = structuredClone(page.ledgerTotals);
  const amounts = (totals[p.platform] ??= {});
  amounts[p.currency] = Number(amounts[p.currency] ?? 0) + p.amountMinor / 10 ** places;
  setLedgerTotals(totals);
}

function formatMoney(amount, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount);
  } catch {
    return `${amount} ${currency}`;
  }
}

function addTip(tip) {
  const who = tip.username || "Someone";
  const line = `${who} tipped ${formatMoney(tip.amount, tip.currency)}`;
  const text = tip.message ? `${line}: ${tip.message}` : line;
  $("tip-list").prepend(el("li", { text }));
  while ($("tip-list").children.length > 20) $("tip-list").lastElementChild.remove();
  chat.list.append(noticeItem("tip", text));
  const totals = { ...page.tipTotals };
  if (tip.totals) {
    // the server's totals only grow: keeping the larger never counts a tip twice
    for (const [currency, amount] of Object.entries(tip.totals)) {
      totals[currency] = Math.max(Number(totals[currency] ?? 0), Number(amount));
    }
  } else {
    totals[tip.currency] = Number(totals[tip.currency] ?? 0) + Number(tip.amount);
  }
  setTipTotals(totals);
}

$("tip-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const formNode = event.target;
  const form = new FormData(formNode);
  // One request id per tip: a resubmission after a lost answer is recorded once.
  formNode.dataset.requestId ||= newRequestId();
  const payload = { amount: Number(form.get("amount")), currency: String(form.get("currency")) };
  const message = String(form.get("message") ?? "").trim();
  if (message) payload.message = message;
  try {
    await act("tip.send", payload, "Your tip was not sent", {
      requestId: formNode.dataset.requestId,
    });
    delete formNode.dataset.requestId;
    formNode.reset();
    alertText("Thank you! Your tip was sent.");
  } catch (error) {
    if (error.code) delete formNode.dataset.requestId; // refused: the next try is a new tip
  }
});

function platformEventText(p) {
  const who = p.displayName || p.username;
  const what = {
    like: "sent likes",
    gift: "sent a gift",
    follow: "followed",
    share: "shared the stream",
    sub: "subscribed",
    resub: "resubscribed",
    giftsub: "gifted a sub",
    giftbomb: "gifted subs",
    membergift: "gifted memberships",
    cheer: "cheered",
    raid: "raided",
    member: "became a member",
    milestone: "reached a milestone",
    superchat: "sent a Super Chat",
    supersticker: "sent a Super Sticker",
    announcement: "announced",
    question: "asked",
    reward: "redeemed a reward",
  }[p.kind] ?? p.kind;
  const count = p.count ? ` ×${p.count}` : "";
  const detail = p.detail ? ` (${p.detail})` : "";
  return `${who} ${what}${count}${detail}`;
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  if (!sessionId) {
    $("title").textContent = "No session given";
    return;
  }
  try {
    page.session = await api(`/web/sessions/${encodeURIComponent(sessionId)}`);
  } catch (error) {
    $("title").textContent = error.status === 404 ? "Session not found" : "Session unavailable";
    alertText(describeError(error));
    return;
  }
  applySession(page.session);
  renderReactionButtons();
  renderCurrencies(DEFAULT_CURRENCIES);
  if (page.ended) return;
  const auth = loadAuth();
  if (auth) join(auth);
  else showSignIn();
}

start();
