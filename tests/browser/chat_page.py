"""`ChatPage`: the web chat as a test sees it — what a user does, and where the page shows it.

    chat.start(agent_id)          # open `/`, enter the key, pick the agent
    chat.send("営業時間は?")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")

Controls are found by their labels in the page's language (`language`, from the browser's), so a
test in Japanese checks the Japanese labels on the way. Every wait is on a DOM state (Playwright's
`expect` retries until its timeout); nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, Request, expect

ARTIFACTS = Path(__file__).parent / "artifacts"
"""Screenshots: of failures, and the ones tests take on purpose (`ChatPage.screenshots`)."""
SCREEN_SIZES = ((1280, 900), (390, 844))
LABELS = {
    "en": {"key": "API key", "connect": "Connect", "agent": "Agent", "message": "Message"},
    "ja": {"key": "API キー", "connect": "接続", "agent": "エージェント", "message": "メッセージ"},
}
BUTTONS = {
    "en": {"send": "Send", "stop": "Stop", "new chat": "New chat", "submit": "Submit"},
    "ja": {
        "send": "送信",
        "stop": "停止",
        "new chat": "新しいチャット",
        "submit": "フォームを送信",
    },
}
"""A desktop window and a phone, as screenshots show the page."""
# Two frames: the page's ResizeObserver has run and what it scrolled is painted.
NEXT_PAINT = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


@dataclass
class ChatPage:
    page: Page
    base_url: str
    api_key: str
    language: str = "en"
    """The page's language: "en" or "ja"."""
    requests: list[Request] = field(default_factory=list)
    """Every request the page made, in order (to assert what was sent, or not)."""

    def __post_init__(self) -> None:
        self.page.on("request", self._record)

    def _record(self, request: Request) -> None:
        self.requests.append(request)

    # -- doing -----------------------------------------------------------------------------

    def open(self) -> None:
        self.page.goto(f"{self.base_url}/")

    def label(self, name: str) -> str:
        return LABELS[self.language][name]

    def button_name(self, name: str) -> str:
        """The label of one of the page's own buttons (`BUTTONS`) in the page's language."""
        return BUTTONS[self.language][name]

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=self.button_name(name))

    def connect(self, key: str | None = None) -> None:
        self.page.get_by_label(self.label("key"), exact=True).fill(
            self.api_key if key is None else key
        )
        self.page.get_by_role("button", name=self.label("connect")).click()
        expect(self.page.locator("#welcome h2")).to_be_visible()

    def choose_agent(self, agent_id: str) -> None:
        self.page.get_by_label(self.label("agent")).select_option(agent_id)
        name = self.page.locator(f'#agent option[value="{agent_id}"]').text_content()
        expect(self.page.locator("#welcome h2")).to_have_text(name or "")

    def start(self, agent_id: str) -> None:
        self.open()
        self.connect()
        self.choose_agent(agent_id)

    def send(self, text: str) -> None:
        self.message_box.fill(text)
        self.message_box.press("Enter")

    def screenshots(self, name: str) -> list[Path]:
        """Save the window at each of `SCREEN_SIZES` as `artifacts/<name>-<w>x<h>.png`."""
        ARTIFACTS.mkdir(exist_ok=True)
        before = self.page.viewport_size
        paths = []
        for width, height in SCREEN_SIZES:
            self.page.set_viewport_size({"width": width, "height": height})
            self.page.evaluate(NEXT_PAINT)
            path = ARTIFACTS / f"{name}-{width}x{height}.png"
            self.page.screenshot(path=str(path))
            paths.append(path)
        if before is not None:
            self.page.set_viewport_size(before)
        return paths

    # -- seeing ----------------------------------------------------------------------------

    @property
    def message_box(self) -> Locator:
        return self.page.get_by_label(self.label("message"), exact=True)

    @property
    def user_messages(self) -> Locator:
        return self.page.locator("article.message.user")

    @property
    def user_texts(self) -> Locator:
        """What each user message says (without its time)."""
        return self.user_messages.locator(".body")

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

    def chat_link(self, chat_id: int) -> Locator:
        return self.page.locator(f'#chat-list li[data-chat-id="{chat_id}"] .chat-link')

    @property
    def stop_button(self) -> Locator:
        return self.button("stop")

    def session_value(self, name: str) -> Any:
        return self.page.evaluate(f"() => sessionStorage.getItem('kaiwa.{name}')")

    def sent_messages(self) -> list[Request]:
        """The POSTs that sent a chat message."""
        return [
            request
            for request in self.requests
            if request.method == "POST" and request.url.endswith("/messages")
        ]
