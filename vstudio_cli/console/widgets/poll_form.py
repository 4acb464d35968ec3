"""The new-poll form: question, options (one per line), duration, multiple choice.

The form checks its fields with the contract's own model (:mod:`..poll_input`) and shows the
reason in place, so nothing invalid is sent; it dismisses with the ``poll.create`` payload.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, TextArea

from vstudio_cli.console.poll_input import PollFormError, poll_payload

__all__ = ["PollForm"]


class PollForm(ModalScreen[dict[str, Any] | None]):
    DEFAULT_CSS = """
    PollForm { align: center middle; }
    PollForm > Vertical {
        width: 64; height: auto; max-height: 22; border: thick $accent; background: $surface;
        padding: 0 1;
    }
    PollForm Label { margin-top: 1; }
    PollForm TextArea { height: 5; }
    PollForm #duration-row { height: 1; margin-top: 1; }
    PollForm #duration-row Label { margin-top: 0; width: auto; }
    PollForm #duration { width: 12; }
    PollForm Checkbox { margin-left: 2; }
    PollForm #problem { color: $error; margin-top: 0; height: auto; width: 100%; }
    PollForm #buttons { height: 1; align: right middle; margin-top: 1; }
    PollForm Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
        Binding("enter", "next_field", "Next field", show=False, priority=True),
        Binding("tab", "focus_next", "Next", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous", show=False, priority=True),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("New poll: question", id="question-label")
            yield Input(placeholder="What should we play next?", id="question", compact=True)
            yield Label("Options, one per line (2 to 10)")
            yield TextArea(id="options", soft_wrap=False, compact=True)
            with Horizontal(id="duration-row"):
                yield Label("Duration (s, empty = open) ")
                yield Input(placeholder="60", id="duration", restrict=r"[0-9]*", compact=True)
                yield Checkbox("multiple choice", id="multiple", compact=True)
            yield Label("", id="problem")
            with Horizontal(id="buttons"):
                yield Button("Cancel (Esc)", id="cancel", compact=True)
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#question", Input).focus()

    def payload(self) -> dict[str, Any]:
        """The fields as a ``poll.create`` payload, or :class:`PollFormError`."""
        return poll_payload(
            self.query_one("#question", Input).value,
            self.query_one("#options", TextArea).text,
            self.query_one("#duration", Input).value,
            self.query_one("#multiple", Checkbox).value,
        )

    def action_create(self) -> None:
        try:
            payload = self.payload()
        except PollFormError as exc:
            self.query_one("#problem", Label).update(str(exc))
            return
        self.dismiss(payload)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Enter moves on from a one-line field; elsewhere (options, buttons) it does its job."""
        if action == "next_field":
            return isinstance(self.focused, Input)
        return True

    def action_next_field(self) -> None:
        # A priority binding acts before the next key is delivered, so keys typed ahead land
        # in the next field; Input.Submitted would arrive after them. Tab is bound the same way.
        self.focus_next()

    def action_focus_next(self) -> None:
        self.focus_next()

    def action_focus_previous(self) -> None:
        self.focus_previous()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()
