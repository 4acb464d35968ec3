"""``vstudio session``, ``vstudio poll`` and ``vstudio login``: scripted setup over REST.

Every command has ``--json`` and the exit codes of :class:`vstudio_cli.remote.ExitCode`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
import typer
from rich.console import Console
from rich.table import Table

from vstudio_cli import sources_cmd
from vstudio_cli.client import ApiError, VStudioClient
from vstudio_cli.passwords import ask_password
from vstudio_cli.remote import (
    AsJson,
    ExitCode,
    ProfileOption,
    ServerOption,
    TokenOption,
    active_profile,
    credentials_path,
    emit,
    err_console,
    load_credentials,
    resolve,
    run_remote,
    save_credentials,
)
from vstudio_cli.session_file import Plan, SessionFileError, plan_changes, read_session_file

session_app = typer.Typer(
    help="Create, start, end, inspect and apply sessions.", no_args_is_help=True
)
session_app.add_typer(sources_cmd.app, name="sources")  # issue 15
poll_app = typer.Typer(help="Create and end polls, read results.", no_args_is_help=True)
console = Console(soft_wrap=True)


def token_subject(token: str) -> str:
    """The user id a token names; the server checks the signature, this only reads it."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        err_console.print(f"[red]Error:[/] the token is not a JWT ({exc})")
        raise typer.Exit(ExitCode.UNAUTHENTICATED) from None
    return str(claims.get("sub", ""))


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show_session(session: dict[str, Any]) -> None:
    table = Table(show_header=False, title=f"session {session['id']}")
    for name in ("title", "status", "artistId", "streamUrl", "streamPlatform"):
        table.add_row(name, str(session.get(name) or "-"))
    for name in ("chatEnabled", "reactionsEnabled", "allowGuests"):
        table.add_row(name, "yes" if session.get(name) else "no")
    table.add_row("producerIds", ", ".join(session.get("producerIds") or []) or "-")
    for name in ("createdAt", "scheduledStart", "actualStart", "endedAt"):
        table.add_row(name, _when(session.get(name)))
    console.print(table)


def login(
    username: Annotated[str, typer.Argument(help="Account name.")],
    password: Annotated[
        str | None, typer.Option(help="Password; prompted for when not given.")
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = None,
    as_json: AsJson = False,
) -> None:
    """Log in and store the server URL and token in your config folder (like gh auth login).

    With --profile NAME the login is kept under that name, beside the others: log in as the
    artist and as a producer, then pick one per command with 'vstudio --profile NAME ...'."""
    profile = active_profile(profile)
    url, _ = resolve(server, None, profile)
    secret = password if password is not None else ask_password(f"Password for {username}")

    async def work(client: VStudioClient) -> dict[str, Any]:
        return await client.login(username, secret)

    answer = run_remote(url, None, work, need_token=False)
    path = save_credentials(url, answer["token"], username, profile)
    emit(
        {"server": url, "user": answer.get("user"), "credentials": str(path), "profile": profile},
        as_json,
        lambda: console.print(
            f"Logged in to {url} as [bold]{username}[/] (profile {profile}); saved to {path}"
        ),
    )


def logout(
    server: ServerOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    as_json: AsJson = False,
) -> None:
    """Revoke your token on the server (every process refuses it at once) and forget it here.

    Only the active profile's login (--profile, else VSTUDIO_PROFILE, else default) is
    forgotten; the other profiles stay logged in."""
    profile = active_profile(profile)
    stored = load_credentials(profile)
    url, jwt_token = resolve(server, token, profile)

    async def work(client: VStudioClient) -> dict[str, Any]:
        return await client.logout()

    try:
        answer = run_remote(url, jwt_token, work)
    finally:  # a token the server refused is no use to keep either
        if jwt_token and stored.get("token") == jwt_token:
            credentials_path(profile).unlink(missing_ok=True)
    emit(
        {"server": url, "profile": profile, **answer},
        as_json,
        lambda: console.print(
            f"Logged out of {url} (profile {profile}); the token is revoked and forgotten"
        ),
    )


@session_app.command("create")
def create(
    title: Annotated[str, typer.Option(help="Session title.")],
    stream_url: Annotated[str | None, typer.Option(help="Twitch/YouTube/TikTok URL.")] = None,
    stream_platform: Annotated[
        str | None, typer.Option(help="twitch, youtube, tiktok or other.")
    ] = None,
    allow_guests: Annotated[bool, typer.Option(help="Let guests join as viewers.")] = False,
    producer: Annotated[
        list[str] | None, typer.Option("--producer", help="A producer's user id (repeatable).")
    ] = None,
    start: Annotated[bool, typer.Option(help="Go live right away.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Create a session (you must be an artist)."""
    fields: dict[str, Any] = {"title": title, "allowGuests": allow_guests}
    if stream_url:
        fields["streamUrl"] = stream_url
    if stream_platform:
        fields["streamPlatform"] = stream_platform
    if producer:
        fields["producerIds"] = producer

    async def work(client: VStudioClient) -> dict[str, Any]:
        session = await client.create_session(**fields)
        return await client.start_session(session["id"]) if start else session

    session = run_remote(server, token, work)
    emit(session, as_json, lambda: _show_session(session))


def _lifecycle(action: str, help_text: str) -> None:
    def command(
        session_id: Annotated[str, typer.Argument(help="Session id.")],
        server: ServerOption = None,
        token: TokenOption = None,
        as_json: AsJson = False,
    ) -> None:
        async def work(client: VStudioClient) -> dict[str, Any]:
            if action == "start":
                return await client.start_session(session_id)
            if action == "end":
                await client.end_session(session_id)
            return await client.get_session(session_id)

        session = run_remote(server, token, work)
        emit(session, as_json, lambda: _show_session(session))

    command.__doc__ = help_text
    session_app.command(action)(command)


_lifecycle("start", "Go live: scheduled -> live (one live session per artist).")
_lifecycle("end", "End the session for everyone.")
_lifecycle("show", "Show one session.")


@session_app.command("list")
def list_sessions(
    artist: Annotated[str | None, typer.Option(help="Only this artist's sessions.")] = None,
    status: Annotated[str | None, typer.Option(help="scheduled, live or ended.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """List sessions, newest first."""

    async def work(client: VStudioClient) -> list[dict[str, Any]]:
        return await client.list_sessions(artist_id=artist, status=status)

    sessions = run_remote(server, token, work)

    def human() -> None:
        table = Table(title=f"{len(sessions)} session(s)")
        table.add_column(
            "id", no_wrap=True, min_width=max((len(s["id"]) for s in sessions), default=2)
        )
        for column in ("title", "status", "artist", "created"):
            table.add_column(column)
        for s in sessions:
            table.add_row(s["id"], s["title"], s["status"], s["artistId"], _when(s["createdAt"]))
        console.print(table)

    emit(sessions, as_json, human)


SESSION_FILE_HELP = """Create or update a session from a TOML file; prints what changed.

The session is found again by its title among your sessions that have not ended, so a second
apply of the same file changes nothing. --dry-run prints the same steps without making them.

\b
The file (every key but title is optional):
  \\[session]
  title = "Friday night live"
  streamUrl = "https://www.twitch.tv/yourchannel"
  streamPlatform = "twitch"        # twitch, youtube, tiktok or other
  chatEnabled = true
  reactionsEnabled = true
  allowGuests = true               # guests may watch without an account
  producerIds = \\["sam"]            # fixed once the session exists
  scheduledStart = 1767225600000   # Unix ms; fixed once the session exists
  live = true                      # start it: scheduled -> live
\b
  \\[\\[ingest]]                       # a chat source the worker fleet reads
  platform = "twitch"              # twitch, youtube, tiktok, discord
  channel = "yourchannel"
  credentials = "default"          # named in the workers' settings
  redundancy = 2                   # workers reading it at once
\b
  \\[\\[polls]]                        # opened in order, one at a time
  question = "Which song next?"
  options = \\["Intro", "Outro"]     # 2 to 10
  duration = 120                   # seconds; none: open until ended
  allowMultiple = false

The \\[\\[ingest]] tables are the session's whole list of sources: apply declares each one and
withdraws the sources the file no longer lists (the plan names each). A table names what to
read as target = "...", or by the flag of 'vstudio ingest' for its platform: channel (Twitch),
video or channel (YouTube), user (TikTok), channelId (Discord).

Polls open only on a live session: with live = false they wait, and an apply after the
session went live opens them. live = true while another of your sessions is live is refused
before anything changes (exit 5). Exit codes: 0 applied (or nothing to do), 2 a bad file,
5 a conflict, others as for every remote command. docs/operations.md has the same format.
"""


@session_app.command("apply", help=SESSION_FILE_HELP)
def apply(
    file: Annotated[Path, typer.Argument(help="TOML file describing the session.")],
    dry_run: Annotated[bool, typer.Option(help="Print the plan, change nothing.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    try:
        spec = read_session_file(file)
    except SessionFileError as exc:
        err_console.print(f"[red]Error:[/] {exc}")
        raise typer.Exit(ExitCode.USAGE) from None

    async def work(client: VStudioClient) -> dict[str, Any]:
        mine = await client.list_sessions(artist_id=token_subject(client.token or ""))
        existing = next(
            (s for s in mine if s["title"] == spec.session.title and s["status"] != "ended"),
            None,
        )
        live_elsewhere = next(
            (
                s
                for s in mine
                if s["status"] == "live" and (existing is None or s["id"] != existing["id"])
            ),
            None,
        )
        polls = await client.list_polls(existing["id"]) if existing else []
        declared = []
        if existing:
            listing = await client.call("GET", sources_cmd.sources_path(existing["id"]))
            declared = listing["sources"]
        plan = plan_changes(spec, existing, polls, live_elsewhere, declared)
        result: dict[str, Any] = {
            "dryRun": dry_run,
            "plan": plan.model_dump(),
            "steps": plan.steps(),
            "changed": [],
            "notes": list(plan.notes),
            "blocked": plan.blocked,
            "session": existing,
        }
        if dry_run or plan.blocked:
            return result
        try:
            await _carry_out(client, plan, result)
        except ApiError as exc:
            raise _partly_applied(exc, result) from None
        session = result["session"]
        if session.get("status") == "scheduled":
            result["start"] = f"vstudio session start {session['id']}"
        return result

    result = run_remote(server, token, work)

    def human() -> None:
        session = result.get("session") or {}
        if result["blocked"]:
            err_console.print(f"[red]Refused, nothing changed:[/] {result['blocked']}")
        elif not result["steps"]:
            console.print(f"[dim]unchanged[/] session {session.get('id')} is as described")
        elif result["dryRun"]:
            for step in result["steps"]:
                console.print(f"[cyan]would[/] {step}")
        else:
            for change in result["changed"]:
                console.print(f"[green]changed[/] {change}")
        for note in result["notes"]:
            console.print(f"[yellow]note[/] {note}")
        if result.get("start"):
            console.print(f"start with: [bold]{result['start']}[/]")

    emit(result, as_json, human)
    if result["blocked"]:
        raise typer.Exit(ExitCode.CONFLICT)


async def _carry_out(client: VStudioClient, plan: Plan, result: dict[str, Any]) -> None:
    """Make the plan's steps in order, recording each in ``result`` as it is done."""
    session = result["session"]
    if plan.create is not None:
        session = result["session"] = await client.create_session(**plan.create)
        result["changed"].append(f"created session {session['id']}")
    assert session is not None
    if plan.update:
        await client.update_session(session["id"], **plan.update)
        session = result["session"] = await client.get_session(session["id"])
        result["changed"].append(f"updated {', '.join(sorted(plan.update))}")
    sources = sources_cmd.sources_path(session["id"])
    for body in plan.add_sources:
        answer = await client.call("POST", sources, body)
        result["changed"].append(f"declared source {answer['source']['id']}")
    for source_id in plan.remove_sources:
        await client.call("DELETE", sources_cmd.sources_path(session["id"], source_id))
        result["changed"].append(f"withdrew source {source_id}")
    if plan.start:
        session = result["session"] = await client.start_session(session["id"])
        result["changed"].append("started (live)")
    if plan.open_poll is not None:
        await client.call("POST", f"/v1/vstudio/sessions/{session['id']}/polls", plan.open_poll)
        result["changed"].append(f"opened poll {plan.open_poll['question']!r}")


def _partly_applied(exc: ApiError, result: dict[str, Any]) -> ApiError:
    """The server's refusal, saying what was already done and what was left behind."""
    if not result["changed"]:
        return exc
    session = result["session"]
    left = f"; session {session['id']} is left {session['status']}" if session else ""
    done = "; ".join(result["changed"])
    return ApiError(
        exc.status, exc.code, f"{exc.message} (already done: {done}{left})", exc.retry_after
    )


@poll_app.command("create")
def poll_create(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    question: Annotated[str, typer.Option(help="The question.")],
    option: Annotated[list[str], typer.Option("--option", help="An answer (2 to 10).")],
    duration: Annotated[int | None, typer.Option(help="Seconds; open-ended if unset.")] = None,
    allow_multiple: Annotated[bool, typer.Option(help="One vote per option.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Open a poll (artist or producer); one active poll per session."""

    async def work(client: VStudioClient) -> dict[str, Any]:
        return await client.create_poll(
            session_id, question, option, duration=duration, allow_multiple=allow_multiple
        )

    poll = run_remote(server, token, work)
    emit(poll, as_json, lambda: console.print(f"opened poll {_poll_id(poll)}: {question}"))


@poll_app.command("end")
def poll_end(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    poll_id: Annotated[str, typer.Argument(help="Poll id.")],
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """End a poll now; its final results are broadcast."""

    async def work(client: VStudioClient) -> dict[str, Any]:
        return await client.end_poll(session_id, poll_id)

    answer = run_remote(server, token, work)
    emit(answer, as_json, lambda: console.print(f"ended poll {poll_id}"))


@poll_app.command("results")
def poll_results(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Every poll of the session with its counts."""

    async def work(client: VStudioClient) -> list[dict[str, Any]]:
        return await client.list_polls(session_id)

    polls = run_remote(server, token, work)

    def human() -> None:
        if not polls:
            console.print("no polls yet")
        for poll in polls:
            results = poll.get("results") or [0] * len(poll["options"])
            total = sum(results) or 1
            table = Table(title=f"{poll['question']} ({poll['status']}, id {poll['id']})")
            table.add_column("option")
            table.add_column("votes", justify="right")
            table.add_column("")
            for name, count in zip(poll["options"], results, strict=False):
                table.add_row(name, str(count), "█" * round(30 * count / total))
            console.print(table)

    emit(polls, as_json, human)


def _poll_id(answer: dict[str, Any]) -> str:
    poll = answer.get("poll", answer)
    return str(poll.get("id") or poll.get("pollId") or "?")
