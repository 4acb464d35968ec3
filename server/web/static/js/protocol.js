// Pure protocol rules of the page: no DOM, no sockets, so the browser tests can call them
// directly. Reconnection schedule, stream embeds, emote splitting, REST equivalents of client
// messages and error wording all live here.

/** The seed's reconnection schedule (milliseconds). */
export const BACKOFF = Object.freeze({
  initial: 1000,
  factor: 2,
  max: 30000,
  retries: 10,
  jitter: 0.3,
});

/**
 * Delay before retry number `attempt` (0-based): exponential, +/- jitter, never over `max`.
 * The jitter's upper end stops at the cap, so at 30 s the delays spread over 21..30 s.
 */
export function backoffDelay(attempt, random = Math.random, schedule = BACKOFF) {
  const base = Math.min(schedule.max, schedule.initial * schedule.factor ** attempt);
  const spread = base * schedule.jitter;
  const low = Math.max(0, base - spread);
  const high = Math.min(schedule.max, base + spread);
  return Math.round(low + random() * (high - low));
}

/** A request refused with 4009 (the server's Redis unreachable) is sent again this often. */
export const OUTAGE_RETRIES = 5;

/**
 * Milliseconds to wait before sending a refused request again (same requestId, so it counts
 * once), or null when it must not be retried: only 4009, a few times, at most 10 s apart.
 */
export function outageDelay(error, attempt) {
  if (Number(error?.code) !== 4009 || attempt >= OUTAGE_RETRIES) return null;
  const seconds = Number(error?.retryAfter);
  return Math.round(Math.min(10, Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000);
}

/** Close codes after which reconnecting cannot help, in plain words. */
export const FATAL_CLOSE_CODES = Object.freeze({
  4001: "This session does not exist.",
  4002: "This session has ended.",
  4004: "You are not allowed to join this session with that role.",
  4005: "This session is for token holders; your wallet did not pass the check.",
});

const ERROR_WORDS = {
  4000: "Your connection ticket was not accepted; reconnecting.",
  4001: "This session does not exist.",
  4002: "This session has ended.",
  4003: "You are going too fast.",
  4004: "You are not allowed to do that.",
  4005: "This needs a token you do not hold.",
  4006: "The server did not accept that",
  4007: "That message is too long.",
  4008: "This session is full right now.",
  4009: "The server is busy for a moment; try again.",
};

/** An error payload `{code, message, retryAfter?}` (or an HTTP status) in plain words. */
export function describeError(error) {
  const code = Number(error?.code);
  const detail = typeof error?.message === "string" ? error.message : "";
  let words = ERROR_WORDS[code];
  if (code === 4003 && error?.retryAfter != null) {
    const seconds = Math.max(1, Math.ceil(Number(error.retryAfter)));
    words = `You are going too fast. Try again in ${seconds} s.`;
  } else if (code === 4006) {
    words = detail ? `The server did not accept that: ${detail}` : `${words}.`;
  } else if (!words) {
    const status = Number(error?.status);
    if (status === 401) words = "Please sign in again.";
    else if (status === 0 || Number.isNaN(status)) words = detail || "Something went wrong.";
    else words = detail || `The server answered ${status}.`;
  } else if (detail && (code === 4004 || code === 4005)) {
    words = `${words} (${detail})`;
  }
  return words;
}

// --- stream embeds ---------------------------------------------------------------------------

function parseUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:" ? url : null;
  } catch {
    return null;
  }
}

const YOUTUBE_ID = /^[A-Za-z0-9_-]{6,20}$/;
const TWITCH_NAME = /^[A-Za-z0-9_]{1,25}$/;
const DIGITS = /^\d{5,25}$/;

function youtubeId(url) {
  const host = url.hostname.replace(/^(www|m|music)\./, "");
  let id = null;
  if (host === "youtu.be") id = url.pathname.slice(1).split("/")[0];
  else if (host === "youtube.com" || host === "youtube-nocookie.com") {
    const parts = url.pathname.split("/").filter(Boolean);
    if (parts[0] === "watch") id = url.searchParams.get("v");
    else if (["embed", "live", "shorts", "v"].includes(parts[0])) id = parts[1];
  }
  return id && YOUTUBE_ID.test(id) ? id : null;
}

function twitchSource(url, parentHost) {
  const host = url.hostname.replace(/^(www|m)\./, "");
  const parts = url.pathname.split("/").filter(Boolean);
  const player = new URL("https://player.twitch.tv/");
  if (host === "player.twitch.tv") {
    const channel = url.searchParams.get("channel");
    const video = url.searchParams.get("video");
    if (channel && TWITCH_NAME.test(channel)) player.searchParams.set("channel", channel);
    else if (video && /^v?\d+$/.test(video)) player.searchParams.set("video", video);
    else return null;
  } else if (host === "twitch.tv") {
    if (parts[0] === "videos" && parts[1] && /^\d+$/.test(parts[1])) {
      player.searchParams.set("video", parts[1]);
    } else if (parts[0] && TWITCH_NAME.test(parts[0])) {
      player.searchParams.set("channel", parts[0]);
    } else return null;
  } else return null;
  player.searchParams.set("parent", parentHost);
  player.searchParams.set("autoplay", "false");
  return player.toString();
}

function tiktokSource(url) {
  const host = url.hostname.replace(/^(www|m)\./, "");
  if (host !== "tiktok.com") return null;
  const parts = url.pathname.split("/").filter(Boolean);
  const video = parts.indexOf("video");
  if (video >= 0 && DIGITS.test(parts[video + 1] || "")) {
    return `https://www.tiktok.com/player/v1/${parts[video + 1]}`;
  }
  return null;
}

/**
 * How to show a session's stream: `{kind: "iframe", src, platform}`, `{kind: "link", href,
 * platform}` (a live TikTok has no embeddable player) or `{kind: "none"}`. Only URLs that
 * parse as one of the known platforms become iframes; anything else is never framed.
 */
export function streamEmbed(streamUrl, platform, parentHost) {
  const url = streamUrl ? parseUrl(streamUrl) : null;
  if (!url) return { kind: "none" };
  const twitch = twitchSource(url, parentHost);
  if (twitch) return { kind: "iframe", src: twitch, platform: "twitch" };
  const youtube = youtubeId(url);
  if (youtube) {
    return {
      kind: "iframe",
      src: `https://www.youtube-nocookie.com/embed/${youtube}`,
      platform: "youtube",
    };
  }
  const tiktok = tiktokSource(url);
  if (tiktok) return { kind: "iframe", src: tiktok, platform: "tiktok" };
  return { kind: "link", href: url.toString(), platform: platform || url.hostname };
}

// --- chat ------------------------------------------------------------------------------------

function safeImageUrl(text) {
  const url = parseUrl(text);
  return url ? url.toString() : null;
}

/**
 * Split chat text into `{text}` and `{emote: {name, url}}` parts. Emote positions are inclusive
 * indexes of Unicode code points (as Twitch counts them), so the text is split by code point,
 * never by UTF-16 unit. Overlapping, out-of-range or non-http(s) emotes are ignored.
 */
export function chatSegments(text, emotes) {
  const points = Array.from(text ?? "");
  const ranges = [];
  for (const emote of emotes ?? []) {
    const url = safeImageUrl(emote?.url);
    if (!url) continue;
    for (const position of emote.positions ?? []) {
      const [start, end] = position ?? [];
      if (!Number.isInteger(start) || !Number.isInteger(end)) continue;
      if (start < 0 || end < start || end >= points.length) continue;
      ranges.push({ start, end, emote: { name: String(emote.name ?? ""), url } });
    }
  }
  ranges.sort((a, b) => a.start - b.start);
  const segments = [];
  let cursor = 0;
  for (const range of ranges) {
    if (range.start < cursor) continue;
    if (range.start > cursor) segments.push({ text: points.slice(cursor, range.start).join("") });
    segments.push({ emote: range.emote });
    cursor = range.end + 1;
  }
  if (cursor < points.length) segments.push({ text: points.slice(cursor).join("") });
  return segments;
}

/** What muting a message's author mutes: a fan's user id, or `<platform>:<user id>` for a
 * platform user (the server drops that user's ingested messages while it is muted). */
export function muteKey(message) {
  if (!message) return null;
  if (message.platform === "audifi") return message.userId ?? null;
  const who = message.userId || message.username;
  return who ? `${message.platform}:${who}` : null;
}

/** The session's platform money as one line: `500 BITS (twitch) · $5.00 (youtube)`. Bits and
 * diamonds are shown as themselves, never converted here. */
export function ledgerLine(totals, formatMoney) {
  const parts = [];
  for (const [platform, amounts] of Object.entries(totals ?? {}).sort()) {
    if (platform === "audifi") continue; // fans' tips have their own line
    for (const [currency, amount] of Object.entries(amounts ?? {}).sort()) {
      if (!(Number(amount) > 0)) continue;
      const shown = /^[A-Z]{3}$/.test(currency)
        ? formatMoney(amount, currency)
        : `${Number(amount).toLocaleString()} ${currency}`;
      parts.push(`${shown} (${platform})`);
    }
  }
  return parts.join(" · ");
}

/** Whether a `chat.delete` payload removes `message`. */
export function deletionMatches(deletion, message) {
  if (!deletion || !message) return false;
  if (deletion.messageId) return deletion.messageId === message.id;
  if (deletion.userId) {
    // a YouTube ban names the author's channel id: display names are not unique
    return deletion.platform === message.platform && deletion.userId === message.userId;
  }
  return (
    Boolean(deletion.username) &&
    deletion.platform === message.platform &&
    (deletion.username === "*" || // a whole-chat clear of that platform (Twitch /clear)
      String(deletion.username).toLowerCase() === String(message.username).toLowerCase())
  );
}

// --- REST equivalents ------------------------------------------------------------------------

const enc = encodeURIComponent;

/** A `poll.update` payload that is a live tally `{pollId, results, totalVotes}`, not an edit
 * (an edit carries the whole poll: `id`, `question`, `options`...). */
export function isPollTally(payload) {
  return (
    typeof payload?.pollId === "string" &&
    Array.isArray(payload.results) &&
    "totalVotes" in payload &&
    !("options" in payload)
  );
}

/**
 * The REST call that performs client message `type` (used over the SSE fallback), as
 * `{method, path, body, headers}`; `null` when the message has no REST form.
 */
export function restAction(sessionId, type, payload = {}, requestId = null) {
  const base = `/v1/vstudio/sessions/${enc(sessionId)}`;
  const { pollId, messageId, ...rest } = payload;
  switch (type) {
    case "poll.create":
      return { method: "POST", path: `${base}/polls`, body: payload };
    case "poll.update":
      return { method: "PATCH", path: `${base}/polls/${enc(pollId)}`, body: rest };
    case "poll.end":
      return { method: "POST", path: `${base}/polls/${enc(pollId)}/end`, body: {} };
    case "poll.vote":
      return { method: "POST", path: `${base}/polls/${enc(pollId)}/votes`, body: rest };
    case "chat.message":
      return {
        method: "POST",
        path: `${base}/chat`,
        body: payload,
        headers: requestId ? { "Idempotency-Key": requestId } : {},
      };
    case "chat.delete":
      return { method: "POST", path: `${base}/chat/${enc(messageId)}/delete`, body: rest };
    case "chat.mute":
      return { method: "POST", path: `${base}/mutes`, body: payload };
    case "reaction.send":
      return { method: "POST", path: `${base}/reactions`, body: payload };
    case "tip.send":
      return {
        method: "POST",
        path: `${base}/tips`,
        body: payload,
        headers: requestId ? { "Idempotency-Key": requestId } : {},
      };
    case "session.update":
      return { method: "PATCH", path: base, body: payload };
    case "session.end":
      return { method: "POST", path: `${base}/end`, body: {} };
    default:
      return null;
  }
}

/** A request id unique enough for one page: random, also outside secure contexts. */
export function newRequestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Roles to ask a ticket for, best first: artist when the session is the user's, producer for
 * staff accounts (the server refuses it unless the session names them), then viewer.
 */
export function roleCandidates(user, session) {
  const roles = [];
  const id = user?.id ?? user?.userId;
  const held = new Set(user?.roles ?? (user?.role ? [user.role] : []));
  if (session && id && session.artistId === id) roles.push("artist");
  if (session && id && (session.producerIds ?? []).includes(id)) roles.push("producer");
  if (!user?.guest && (held.has("producer") || held.has("artist"))) roles.push("producer");
  roles.push("viewer");
  return [...new Set(roles)];
}

/** Width of each result bar in percent, from counts aligned with the options. */
export function resultShares(results) {
  const counts = (results ?? []).map((n) => Math.max(0, Number(n) || 0));
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((n) => (total ? Math.round((n * 1000) / total) / 10 : 0));
}
