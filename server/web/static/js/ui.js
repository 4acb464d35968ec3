// Rendering: turns session data into DOM. Every user-supplied string goes in through
// textContent or attributes set by DOM APIs, never through innerHTML.

import { chatSegments, deletionMatches, muteKey, resultShares, streamEmbed } from "./protocol.js";

export const PLATFORM_NAMES = Object.freeze({
  twitch: "Twitch",
  youtube: "YouTube",
  tiktok: "TikTok",
  discord: "Discord",
  audifi: "V Studio",
});

const CHAT_LIMIT = 250;
const NAME_COLOURS = 8;

/** `el("li", {className: "x", dataset: {id}}, child, "text")`: a small DOM builder. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function colourOf(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `name-c${hash % NAME_COLOURS}`;
}

// --- stream ----------------------------------------------------------------------------------

export function renderStream(root, session) {
  const embed = streamEmbed(session?.streamUrl, session?.streamPlatform, location.hostname);
  root.replaceChildren();
  root.dataset.kind = embed.kind;
  if (embed.kind === "iframe") {
    root.append(
      el("iframe", {
        src: embed.src,
        title: `${PLATFORM_NAMES[embed.platform] ?? "Stream"} player`,
        allow: "autoplay; fullscreen; picture-in-picture",
        referrerpolicy: "strict-origin-when-cross-origin",
        dataset: { platform: embed.platform },
      }),
    );
  } else if (embed.kind === "link") {
    root.append(
      el(
        "div",
        { className: "placeholder" },
        el("p", { text: "This stream cannot be shown here." }),
        el("a", {
          href: embed.href,
          target: "_blank",
          rel: "noopener noreferrer",
          text: `Watch on ${embed.platform}`,
        }),
      ),
    );
  } else {
    root.append(
      el("div", { className: "placeholder" }, el("p", { text: "No stream is linked yet." })),
    );
  }
}

// --- chat ------------------------------------------------------------------------------------

/** The chat list: adds messages once, applies deletions, keeps the newest few hundred. */
export class ChatView {
  constructor(list, { onDelete, onMute, isMuted } = {}) {
    this.list = list;
    this.onDelete = onDelete;
    this.onMute = onMute;
    this.isMuted = isMuted ?? (() => false);
    this.messages = new Map();
    this.staff = false;
  }

  setStaff(staff) {
    this.staff = staff;
    this.list.classList.toggle("staff", staff);
  }

  add(message) {
    this.addMany([message]);
  }

  /**
   * Add a batch (one chat.aggregate) with one layout read and one write, however many
   * messages it holds: a busy chat must not make the page measure itself per message.
   */
  addMany(messages) {
    const fresh = messages.filter((m) => m?.id && !this.messages.has(m.id)).slice(-CHAT_LIMIT);
    if (!fresh.length) return;
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const batch = document.createDocumentFragment();
    for (const message of fresh) {
      const item = this.render(message);
      this.messages.set(message.id, { message, item });
      batch.append(item);
    }
    this.list.append(batch);
    while (this.messages.size > CHAT_LIMIT) {
      const [oldest, { item: old }] = this.messages.entries().next().value;
      old.remove();
      this.messages.delete(oldest);
    }
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  /** Label each of the user's mute buttons with what pressing it would do now. */
  setMuted(userId, muted) {
    for (const { message, item } of this.messages.values()) {
      if (muteKey(message) !== userId) continue;
      const button = item.querySelector("button.mute");
      if (!button) continue;
      const name = message.displayName || message.username;
      button.textContent = muted ? "Unmute" : "Mute";
      button.setAttribute("aria-label", `${muted ? "Unmute" : "Mute"} ${name}`);
    }
  }

  remove(deletion) {
    for (const [id, { message, item }] of [...this.messages]) {
      if (deletionMatches(deletion, message)) {
        item.remove();
        this.messages.delete(id);
      }
    }
  }

  render(message) {
    const platform = PLATFORM_NAMES[message.platform] ? message.platform : "audifi";
    const name = message.displayName || message.username;
    const text = el("span", { className: "text" });
    for (const part of chatSegments(message.text, message.emotes)) {
      if (part.emote) {
        const image = el("img", {
          className: "emote",
          src: part.emote.url,
          alt: part.emote.name,
          title: part.emote.name,
          loading: "lazy",
          referrerpolicy: "no-referrer",
        });
        // An emote the platform's CDN does not deliver reads as its name, not a broken image.
        image.addEventListener("error", () =>
          image.replaceWith(el("span", { className: "emote-name", text: part.emote.name })),
        );
        text.append(image);
      } else {
        text.append(part.text);
      }
    }
    const badges = [];
    if (message.isModerator) badges.push(el("span", { className: "role mod", text: "mod" }));
    if (message.isSubscriber) badges.push(el("span", { className: "role sub", text: "sub" }));
    if ((message.badges ?? []).includes("holder")) {
      badges.push(el("span", { className: "role holder", text: "holder" }));
    }
    const item = el(
      "li",
      {
        className: `msg platform-${platform}`,
        dataset: { id: message.id, platform, username: message.username },
      },
      el("span", {
        className: `badge badge-${platform}`,
        text: PLATFORM_NAMES[platform],
        title: `from ${PLATFORM_NAMES[platform]}`,
      }),
      ...badges,
      el("span", { className: `name ${colourOf(message.username)}`, text: name }),
      " ",
      text,
    );
    const tools = el("span", { className: "tools" });
    tools.append(
      el("button", {
        type: "button",
        className: "small delete",
        text: "Delete",
        "aria-label": `Delete message from ${name}`,
        onclick: () => this.onDelete?.(message),
      }),
    );
    if (muteKey(message)) {
      const verb = this.isMuted(muteKey(message)) ? "Unmute" : "Mute";
      tools.append(
        el("button", {
          type: "button",
          className: "small mute",
          text: verb,
          "aria-label": `${verb} ${name}`,
          onclick: () => this.onMute?.(message),
        }),
      );
    }
    item.append(tools);
    return item;
  }
}

/** A line in the chat for a tip or a platform event (gift, follow, raid...). */
export function noticeItem(kind, text) {
  return el("li", { className: `notice notice-${kind}` }, el("span", { text }));
}

// --- poll ------------------------------------------------------------------------------------

/** The active (or last) poll with result bars; `onVote(index)` when an option is chosen. */
export class PollView {
  constructor(root, { onVote } = {}) {
    this.root = root;
    this.onVote = onVote;
    this.poll = null;
    this.voted = new Set();
  }

  show(poll, voted = new Set()) {
    this.poll = poll ? { ...poll, results: poll.results ?? [] } : null;
    this.voted = voted;
    this.render();
    clearInterval(this.ticker);
    if (this.poll?.endsAt && this.poll.status !== "ended") {
      this.ticker = setInterval(() => this.paint(), 1000); // the "ends in" countdown
    }
  }

  results(update) {
    if (!this.poll || update.pollId !== this.poll.id) return;
    if (this.poll.status === "ended" && !update.final) return; // late counts: the final ones stand
    this.poll.results = update.results ?? this.poll.results;
    if (update.final) {
      this.poll.status = "ended";
      clearInterval(this.ticker);
    }
    this.paint();
  }

  markVoted(index) {
    this.voted.add(index);
    this.paint();
  }

  render() {
    const body = this.root.querySelector(".poll-body");
    const empty = this.root.querySelector(".poll-empty");
    const options = this.root.querySelector(".poll-options");
    options.replaceChildren();
    empty.hidden = Boolean(this.poll);
    body.hidden = !this.poll;
    if (!this.poll) return;
    this.root.querySelector(".poll-question").textContent = this.poll.question;
    this.poll.options.forEach((label, index) => {
      const fill = el("span", { className: "fill" });
      const button = el(
        "button",
        {
          type: "button",
          className: "option",
          dataset: { index: String(index) },
          onclick: () => this.onVote?.(index),
        },
        el("span", { className: "label", text: label }),
        el("span", { className: "count" }),
        el("span", { className: "bar", "aria-hidden": "true" }, fill),
      );
      options.append(el("li", {}, button));
    });
    this.paint();
  }

  paint() {
    if (!this.poll) return;
    const counts = this.poll.options.map((_, i) => Number(this.poll.results[i] ?? 0));
    const shares = resultShares(counts);
    const ended = this.poll.status === "ended";
    const single = !this.poll.allowMultiple;
    const total = counts.reduce((a, b) => a + b, 0);
    this.root.querySelectorAll(".option").forEach((button) => {
      const index = Number(button.dataset.index);
      const chosen = this.voted.has(index);
      button.setAttribute("aria-pressed", chosen ? "true" : "false");
      button.disabled = ended || chosen || (single && this.voted.size > 0);
      button.classList.toggle("chosen", chosen);
      button.querySelector(".fill").style.width = `${shares[index]}%`;
      button.querySelector(".count").textContent = `${counts[index]} (${shares[index]}%)`;
      button.querySelector(".count").dataset.count = String(counts[index]);
    });
    const status = this.root.querySelector(".poll-status");
    const parts = [`${total} vote${total === 1 ? "" : "s"}`];
    if (ended) parts.push("final results");
    else if (this.poll.endsAt) {
      const left = Math.max(0, Math.round((this.poll.endsAt - Date.now()) / 1000));
      parts.push(`ends in ${left} s`);
    }
    if (this.voted.size) {
      const names = [...this.voted].map((i) => this.poll.options[i]).filter(Boolean);
      parts.push(`you voted for ${names.join(", ")}`);
    }
    status.textContent = parts.join(" · ");
    this.root.dataset.status = ended ? "ended" : "active";
  }
}

// --- reactions -------------------------------------------------------------------------------

/** Float each burst's emoji over the stream; bounded so a big burst stays cheap. */
export function animateBurst(layer, counts, reduceMotion = false) {
  const entries = Object.entries(counts ?? {}).filter(([, n]) => Number(n) > 0);
  for (const [emoji, count] of entries) {
    const copies = reduceMotion ? 1 : Math.min(12, Math.max(1, Math.ceil(Math.log2(count + 1))));
    for (let i = 0; i < copies; i += 1) {
      const bubble = el("span", { className: "burst", text: emoji, dataset: { emoji } });
      bubble.style.left = `${10 + Math.random() * 80}%`;
      bubble.style.animationDelay = `${i * 90}ms`;
      bubble.addEventListener("animationend", () => bubble.remove());
      layer.append(bubble);
      setTimeout(() => bubble.remove(), 4000 + i * 90);
    }
  }
}

/** Running totals next to each reaction button. */
export function addReactionTotals(totals, counts) {
  for (const [emoji, count] of Object.entries(counts ?? {})) {
    totals.set(emoji, (totals.get(emoji) ?? 0) + Number(count || 0));
  }
}

// --- connection state ------------------------------------------------------------------------

const STATE_WORDS = {
  idle: "Not connected",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  resumed: "Live · resumed, nothing missed",
  sse: "Live · fallback connection (SSE)",
  ended: "Session ended",
  failed: "Disconnected",
};

export function renderConnection(node, detail) {
  const { state } = detail;
  node.dataset.state = state;
  let words = STATE_WORDS[state] ?? state;
  if (state === "reconnecting" && detail.delay != null) {
    const seconds = Math.max(1, Math.round(detail.delay / 1000));
    words = detail.reason
      ? `${detail.reason} Retrying in ${seconds} s…`
      : `Reconnecting in ${seconds} s…`;
  } else if (state === "connecting" && detail.fallback) {
    words = "WebSocket blocked; trying the fallback…";
  } else if (state === "live" && detail.recovered === false) {
    words = "Live · reconnected; some earlier chat may be missing";
  } else if (state === "failed" && detail.message) {
    words = `Disconnected: ${detail.message}`;
  }
  node.textContent = words;
}
