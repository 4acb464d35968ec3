// The front page: the live sessions, each a link to its page, refreshed every 10 s.

import { api } from "./client.js";
import { describeError } from "./protocol.js";
import { PLATFORM_NAMES, el } from "./ui.js";

async function start() {
  const status = document.getElementById("home-status");
  const list = document.getElementById("sessions");
  try {
    const answer = await api("/web/sessions?status=live");
    const sessions = Array.isArray(answer) ? answer : (answer?.sessions ?? []);
    list.replaceChildren(
      ...sessions.map((session) =>
        el(
          "li",
          { className: "card session-card", dataset: { id: session.id } },
          el("a", { href: `/s/${encodeURIComponent(session.id)}`, text: session.title }),
          el("span", {
            className: "muted",
            text: [
              session.artistId ? `by ${session.artistId}` : "",
              PLATFORM_NAMES[session.streamPlatform] ?? "",
              session.allowGuests ? "guests welcome" : "",
            ]
              .filter(Boolean)
              .join(" · "),
          }),
        ),
      ),
    );
    status.textContent = sessions.length
      ? `${sessions.length} live session${sessions.length === 1 ? "" : "s"}`
      : "Nobody is live right now. Come back soon!";
  } catch (error) {
    status.textContent = `Live sessions cannot be listed: ${describeError(error)}`;
  }
}

start();
setInterval(start, 10000); // sessions go live and end; the list follows
