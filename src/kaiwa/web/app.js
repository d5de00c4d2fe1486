// The web chat served at `/`: an API key, a published agent, its chats, and the answers streamed
// through the JavaScript client (`vendor/kaiwa-client`, a copy of clients/js/src).
//
// A reload during an answer reattaches to it: at load, the answer kept in sessionStorage
// (`session.running`, see following.js) is replayed from its events with its resume token and
// shown finishing. Opening a chat whose last answer is still in progress reattaches with the key.
// Switching the language draws the page again the same way: the open chat is opened again.

import { deleteChat, findAnswer } from "./api.js";
import { ChatList } from "./chats.js";
import { Composer } from "./composer.js";
import { h, replace } from "./dom.js";
import { downloadFile } from "./files.js";
import { Follower } from "./following.js";
import { showHistory } from "./history.js";
import { language, localize, onLanguageChange, setLanguage, t } from "./i18n.js";
import { AnswerView, userMessage } from "./messages.js";
import { FollowScroll } from "./scroll.js";
import { session } from "./session.js";
import { showWelcome } from "./welcome.js";
import {
  BadRequestError,
  ConflictError,
  KaiwaClient,
  PermissionDeniedError,
} from "./vendor/kaiwa-client/index.js";

const CHAT_PAGE = 100;
const NAME_LENGTH = 40;
const SHOWN_WHEN_CONNECTED = ["sidebar", "conversation", "composer", "agent-picker", "change-key"];

// Relative to the page, so that a reverse proxy may serve kaiwa under a path prefix.
const API_ROOT = new URL(".", window.location.href).href;

const $ = (id) => document.getElementById(id);

class App {
  client = null;
  agents = [];
  agent = null;
  chatId = null;
  /** The answers of the conversation shown, oldest first. */
  views = [];
  #epoch = 0; // bumped when the conversation shown changes: late results for the old one are dropped

  constructor() {
    this.composer = new Composer($("composer"), {
      onSend: (message) => this.send(message),
      onStop: () => {
        this.composer.stopping();
        this.follower.stop();
      },
      upload: (file) => this.client.files.upload(file),
    });
    this.chats = new ChatList($("sidebar"), {
      onOpen: (chatId) => this.openChat(chatId),
      onRename: (chatId, name) => this.renameChat(chatId, name),
      onDelete: (chatId, name) => this.deleteChat(chatId, name),
    });
    this.scroll = new FollowScroll($("conversation"), $("messages"));
    this.follower = new Follower({
      onRunning: (on) => {
        this.composer.setRunning(on);
        this.refreshActions();
      },
      onTitle: (chatId, name) => this.chats.rename(chatId, name),
      onEnded: (view, chatId, responseId) => this.#ended(view, chatId, responseId),
      announce: (text) => this.announce(text),
    });
    this.actions = {
      onFeedback: (view, type) => this.feedback(view, type),
      onRegenerate: (view) => this.regenerate(view),
      onSubmitForm: (view, form, values) => this.submitForm(view, form, values),
    };
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (key) this.connect(key);
    });
    $("change-key").addEventListener("click", () => this.showKeyPanel());
    $("agent").addEventListener("change", (event) => this.selectAgent(event.target.value));
    $("new-chat").addEventListener("click", () => this.newChat());
    $("language").addEventListener("change", (event) => setLanguage(event.target.value));
    onLanguageChange(() => this.#redraw());
  }

  async boot() {
    localize(document);
    $("language").value = language();
    const key = session.apiKey;
    if (key) await this.connect(key);
    else this.showKeyPanel();
  }

  // -- key and agent ------------------------------------------------------------------------

  showKeyPanel(error = null) {
    this.follower.detach();
    for (const id of SHOWN_WHEN_CONNECTED) $(id).hidden = true;
    $("key-panel").hidden = false;
    $("key-error").textContent = error ?? "";
    $("key-error").hidden = !error;
    $("key-input").value = "";
    $("key-input").focus();
  }

  async connect(key) {
    const client = new KaiwaClient({ baseUrl: API_ROOT, apiKey: key });
    let agents;
    try {
      agents = await client.agents.published();
    } catch (error) {
      if (error instanceof PermissionDeniedError) {
        session.apiKey = null;
        this.showKeyPanel(t("keyRefused", { error: error.message }));
      } else {
        this.showKeyPanel(t("unreachable", { error: error.message }));
      }
      return;
    }
    session.apiKey = key;
    this.client = client;
    this.agents = agents;
    $("key-panel").hidden = true;
    for (const id of SHOWN_WHEN_CONNECTED) $(id).hidden = false;
    replace(
      $("agent"),
      agents.map((agent) => h("option", { value: agent.id }, agent.name)),
    );
    if (agents.length === 0) {
      this.agent = null;
      this.composer.setEnabled(false);
      replace($("welcome"), h("p", {}, t("noAgent")));
      return;
    }
    const running = session.running;
    const wanted = running?.agentId ?? session.agentId;
    this.agent = agents.find((agent) => agent.id === wanted) ?? agents[0];
    $("agent").value = this.agent.id;
    session.agentId = this.agent.id;
    this.composer.setEnabled(true);
    await this.loadChats();
    const chatId = running?.chatId ?? session.chatId;
    if (chatId !== null && (running || this.chats.has(chatId))) await this.openChat(chatId);
    else this.newChat();
  }

  async selectAgent(agentId) {
    const agent = this.agents.find((a) => a.id === agentId);
    if (!agent) return;
    this.agent = agent;
    session.agentId = agent.id;
    this.chats.clear();
    this.newChat();
    await this.loadChats();
  }

  /** The key's chats with the chosen agent, newest first. */
  async loadChats() {
    const agentId = this.agent.id;
    try {
      const page = await this.client.chats.list({ agentId, limit: CHAT_PAGE });
      if (this.agent?.id === agentId) this.chats.show(page.items);
    } catch (error) {
      this.announce(t("loadChatsFailed", { error: error.message }));
    }
  }

  // A rename or delete that fails says so on the composer's error line (an alert): the sidebar
  // has no room for one.
  async renameChat(chatId, name) {
    try {
      const chat = await this.client.chats.rename(chatId, { name });
      this.chats.rename(chatId, chat?.name ?? name);
    } catch (error) {
      this.composer.showError(t("renameFailed", { error: error.message }));
    }
  }

  async deleteChat(chatId, name) {
    if (!window.confirm(t("confirmDelete", { name }))) return;
    try {
      await deleteChat(this.client.baseUrl, session.apiKey, chatId);
    } catch (error) {
      this.composer.showError(t("deleteFailed", { error: error.message }));
      return;
    }
    this.chats.remove(chatId);
    if (session.running?.chatId === chatId) session.running = null;
    if (this.chatId === chatId) this.newChat();
    this.announce(t("chatDeleted"));
  }

  /** The language changed: every string of the page again, in it. */
  #redraw() {
    localize(document);
    $("language").value = language();
    this.chats.redraw();
    if (!this.client || !this.agent) return;
    if (this.chatId === null) this.#welcome();
    else this.openChat(this.chatId);
  }

  // -- the conversation shown ---------------------------------------------------------------------

  #show(chatId) {
    this.chats.fold(false);
    this.follower.detach();
    this.#epoch += 1;
    this.chatId = chatId;
    session.chatId = chatId;
    this.views = [];
    this.chats.setActive(chatId);
    replace($("messages"));
    return this.#epoch;
  }

  newChat() {
    this.#show(null);
    this.#welcome();
    this.composer.focus();
  }

  #welcome() {
    if (this.agent) showWelcome($("welcome"), this.agent, (q) => this.composer.prefill(q));
  }

  async openChat(chatId) {
    const epoch = this.#show(chatId);
    $("welcome").hidden = true;
    replace($("messages"), h("p", { class: "muted" }, t("loading")));
    const rows = [];
    try {
      for await (const message of this.client.messages.iterAll(chatId)) rows.push(message);
    } catch (error) {
      if (epoch !== this.#epoch) return;
      const message = t("loadChatFailed", { error: error.message });
      replace($("messages"), h("p", { class: "error", role: "alert" }, message));
      session.chatId = null;
      session.running = null;
      return;
    }
    if (epoch !== this.#epoch) return;
    replace($("messages"));
    const live = showHistory(rows, {
      container: $("messages"),
      newAnswer: (agentName) => this.#newAnswer(agentName),
      fileActions: this.#fileActions(),
    });
    this.scroll.toEnd();
    this.refreshActions();
    const running = session.running;
    if (live) {
      const token = running?.responseId === live.responseId ? running.token : null;
      const { responseId } = live;
      await this.follower.attach(this.client, live, {
        chatId,
        responseId,
        token,
        agentId: this.agent.id,
      });
    } else if (running?.chatId === chatId) {
      session.running = null; // it ended while the page was away
    }
  }

  #newAnswer(agentName = this.agent?.name, after = null) {
    const view = new AnswerView(this.actions, { agentName });
    if (after) after.element.after(view.element);
    else $("messages").append(view.element);
    this.views.push(view);
    return view;
  }

  #fileActions() {
    return { onOpenFile: (file) => this.openFile(file) };
  }

  // -- asking -----------------------------------------------------------------------------------

  async send({ text, files, restore }) {
    if (this.follower.running || !this.agent) return;
    const agentId = this.agent.id;
    const epoch = this.#epoch;
    this.composer.setRunning(true);
    let chatId = this.chatId;
    if (chatId === null) {
      try {
        chatId = (await this.client.chats.create({ name: chatName(text), agentId })).id;
      } catch (error) {
        this.composer.setRunning(false);
        restore();
        this.composer.showError(t("startChatFailed", { error: error.message }));
        return;
      }
      this.composer.setRunning(false);
      if (epoch !== this.#epoch) return restore();
      this.chatId = chatId;
      session.chatId = chatId;
      this.chats.add({ id: chatId, name: chatName(text) });
      this.chats.setActive(chatId);
    }
    $("welcome").hidden = true;
    const user = userMessage(text, files, this.#fileActions());
    $("messages").append(user);
    const answer = this.#newAnswer();
    this.scroll.toEnd();
    const attachedFileUuids = files.length ? files.map((file) => file.uuid) : undefined;
    const stream = this.client.messages.stream(chatId, {
      message: text,
      agentId,
      attachedFileUuids,
    });
    let opened;
    try {
      opened = await this.#open(stream);
    } catch (error) {
      // Refused before it started (busy, too long, rate limited…): nothing was stored.
      user.remove();
      answer.element.remove();
      this.views = this.views.filter((view) => view !== answer);
      restore();
      this.composer.showError(error.message);
      this.refreshActions();
      return;
    }
    if (opened) await this.#follow(stream, answer, chatId);
  }

  async regenerate(view) {
    if (this.follower.running || this.chatId === null) return;
    const chatId = this.chatId;
    const stream = this.client.messages.streamRegenerate(chatId, { agentId: this.agent.id });
    let opened;
    try {
      opened = await this.#open(stream);
    } catch (error) {
      this.composer.showError(error.message);
      return;
    }
    if (!opened) return;
    view.supersede();
    await this.#follow(stream, this.#newAnswer(this.agent.name, view), chatId);
  }

  async submitForm(view, form, values) {
    if (this.follower.running || this.chatId === null) {
      form.showError(t("waitForAnswer"));
      return;
    }
    const chatId = this.chatId;
    form.clearErrors();
    form.busy(true);
    const agentId = this.agent.id;
    const formId = form.formRequestId;
    const stream = this.client.forms.stream(chatId, formId, values, { agentId });
    let opened;
    try {
      opened = await this.#open(stream);
    } catch (error) {
      form.busy(false);
      if (error instanceof ConflictError) {
        const expired = /expired/i.test(error.message);
        const note = expired ? t("formExpired") : t("formAlreadySubmitted");
        view.lockForm(null, { note, expired });
      } else if (error instanceof BadRequestError) {
        form.showRefusal(error.message, error.errors.length ? error.errors : null);
      } else {
        form.showError(error.message);
      }
      return;
    }
    form.busy(false);
    view.lockForm(values);
    if (opened) await this.#follow(stream, this.#newAnswer(this.agent.name, view), chatId);
  }

  /**
   * Send the request and wait for the stream to open; throws what the server refused. False when
   * the page moved to another conversation meanwhile: the answer is then left to itself.
   */
  async #open(stream) {
    this.follower.claim(stream);
    try {
      await stream.open();
    } catch (error) {
      if (!this.follower.owns(stream)) return false;
      this.follower.release(stream);
      throw error;
    }
    return this.follower.owns(stream);
  }

  async #follow(stream, view, chatId) {
    this.scroll.toEnd();
    await this.follower.follow(stream, view, { chatId, agentId: this.agent.id });
  }

  async #ended(view, chatId, responseId) {
    if (chatId !== this.chatId) return;
    this.refreshActions();
    if (view.status === "awaiting_form") {
      view.form?.element.querySelector("input, select, textarea")?.focus();
    }
    await this.#findMessageId(view, chatId, responseId);
  }

  /** The stored answer's id (for feedback) and time: the events carry neither. */
  async #findMessageId(view, chatId, responseId) {
    if (!responseId) return;
    const row = await findAnswer(this.client, chatId, responseId).catch(() => null);
    if (!row) return; // feedback stays unavailable for this answer
    view.setMessageId(row.id);
    view.setTime(row.created_at);
  }

  async feedback(view, type) {
    if (view.messageId === null || this.chatId === null) return;
    try {
      await this.client.feedback.create(this.chatId, view.messageId, { type });
      view.setFeedback(type);
      this.announce(t("feedbackThanks"));
    } catch (error) {
      this.announce(t("feedbackFailed", { error: error.message }));
    }
  }

  /** Regenerate is offered on the last answer only, and only while nothing runs. */
  refreshActions() {
    const shown = this.views.filter((v) => v.element.isConnected && v.status !== "superseded");
    const last = shown.at(-1);
    const idle = !this.follower?.running;
    for (const view of this.views) {
      const ended = ["completed", "cancelled", "failed"].includes(view.status);
      view.offerRegenerate(view === last && idle && ended);
    }
  }

  async openFile(file) {
    try {
      await downloadFile(this.client.baseUrl, session.apiKey, file);
    } catch (error) {
      this.announce(t("downloadFailed", { error: error.message }));
    }
  }

  announce(text) {
    $("announcer").textContent = text;
  }

}

function chatName(text) {
  const line = text.trim().split("\n")[0];
  return line.length > NAME_LENGTH ? `${line.slice(0, NAME_LENGTH - 1)}…` : line;
}

new App().boot();
