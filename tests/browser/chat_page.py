"""`ChatPage`: the web chat as a test sees it — what a user does, and where the page shows it.

    chat.start(agent_id)          # open `/`, enter the key, pick the agent
    chat.send("営業時間は?")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")

Every wait is on a DOM state (Playwright's `expect` retries until its timeout); nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Locator, Page, Request, expect


@dataclass
class ChatPage:
    page: Page
    base_url: str
    api_key: str
    requests: list[Request] = field(default_factory=list)
    """Every request the page made, in order (to assert what was sent, or not)."""

    def __post_init__(self) -> None:
        self.page.on("request", self._record)

    def _record(self, request: Request) -> None:
        self.requests.append(request)

    # -- doing -----------------------------------------------------------------------------

    def open(self) -> None:
        self.page.goto(f"{self.base_url}/")

    def connect(self, key: str | None = None) -> None:
        self.page.get_by_label("API key").fill(self.api_key if key is None else key)
        self.page.get_by_role("button", name="Connect").click()
        expect(self.page.locator("#welcome h2")).to_be_visible()

    def choose_agent(self, agent_id: str) -> None:
        self.page.get_by_label("Agent").select_option(agent_id)
        name = self.page.locator(f'#agent option[value="{agent_id}"]').text_content()
        expect(self.page.locator("#welcome h2")).to_have_text(name or "")

    def start(self, agent_id: str) -> None:
        self.open()
        self.connect()
        self.choose_agent(agent_id)

    def send(self, text: str) -> None:
        self.message_box.fill(text)
        self.message_box.press("Enter")

    # -- seeing ----------------------------------------------------------------------------

    @property
    def message_box(self) -> Locator:
        return self.page.get_by_label("Message", exact=True)

    @property
    def user_messages(self) -> Locator:
        return self.page.locator("article.message.user")

    @property
    def answers(self) -> Locator:
        return self.page.locator("article.message.answer")

    @property
    def last_answer(self) -> Locator:
        return self.answers.last

    def answer_text(self, answer: Locator | None = None) -> Locator:
        return (answer or self.last_answer).locator(".body")

    @property
    def chat_links(self) -> Locator:
        return self.page.locator("#chat-list .chat-link")

    @property
    def stop_button(self) -> Locator:
        return self.page.get_by_role("button", name="Stop")

    def session_value(self, name: str) -> Any:
        return self.page.evaluate(f"() => sessionStorage.getItem('kaiwa.{name}')")

    def sent_messages(self) -> list[Request]:
        """The POSTs that sent a chat message."""
        return [
            request
            for request in self.requests
            if request.method == "POST" and request.url.endswith("/messages")
        ]
