// The chat list of the sidebar: the key's chats with the chosen agent, newest first, with the
// open one marked (`aria-current`), titles updated live (`response.chat.title.updated`), and a
// rename (edited in place) and a delete button on each. A narrow window folds the list away
// behind its heading (`#chats-toggle`).
//
//     const chats = new ChatList(sidebarElement, { onOpen, onRename, onDelete });
//     chats.show(await client.chats.list({ agentId }).items);
//     chats.rename(chatId, "営業時間について");
//
// `onRename(chatId, name)` and `onDelete(chatId, name)` do the asking (and the confirming); the
// list changes when they say so (`rename`, `remove`).

import { h, isComposing, markLanguage, replace } from "./dom.js";
import { t } from "./i18n.js";

export class ChatList {
  #sidebar;
  #list;
  #empty;
  #toggle;
  #handlers;
  #active = null;
  #shown = []; // the chats last shown, to draw them again in another language
  #added = new Map();

  constructor(sidebar, handlers) {
    this.#sidebar = sidebar;
    this.#list = sidebar.querySelector("#chat-list");
    this.#empty = sidebar.querySelector("#chat-list-empty");
    this.#toggle = sidebar.querySelector("#chats-toggle");
    this.#handlers = handlers;
    this.#toggle.addEventListener("click", () => this.fold());
  }

  /** Open or close the list (only a narrow window folds it away); it starts closed. */
  fold(open = !this.#sidebar.classList.contains("open")) {
    this.#sidebar.classList.toggle("open", open);
    this.#toggle.setAttribute("aria-expanded", String(open));
  }

  show(chats) {
    // A listing fetched before a chat was created here must not drop that chat.
    const listed = new Set(chats.map((chat) => chat.id));
    const added = [...this.#added.values()].filter((chat) => !listed.has(chat.id));
    this.#shown = chats;
    const all = [...added.reverse(), ...chats];
    replace(
      this.#list,
      all.map((chat) => this.#item(chat)),
    );
    this.#empty.hidden = all.length > 0;
    this.setActive(this.#active);
  }

  /** The same chats, drawn again (the language changed). */
  redraw() {
    this.show(this.#shown);
  }

  /** Another agent's chats come next: forget this one's. */
  clear() {
    this.#added.clear();
    this.show([]);
  }

  /** A chat just created: first in the list. */
  add(chat) {
    this.#added.set(chat.id, chat);
    this.#list.prepend(this.#item(chat));
    this.#empty.hidden = true;
    this.setActive(this.#active);
  }

  has(chatId) {
    return this.#find(chatId) !== null;
  }

  setActive(chatId) {
    this.#active = chatId;
    for (const item of this.#list.children) {
      const button = item.querySelector(".chat-link");
      if (Number(item.dataset.chatId) === chatId) button?.setAttribute("aria-current", "page");
      else button?.removeAttribute("aria-current");
    }
  }

  rename(chatId, name) {
    const chat = this.#added.get(chatId) ?? this.#shown.find((c) => c.id === chatId);
    if (chat) chat.name = name;
    const item = this.#find(chatId);
    if (item) item.replaceWith(this.#item({ id: chatId, name }));
    this.setActive(this.#active);
  }

  remove(chatId) {
    this.#added.delete(chatId);
    this.#shown = this.#shown.filter((chat) => chat.id !== chatId);
    this.#find(chatId)?.remove();
    this.#empty.hidden = this.#list.children.length > 0;
  }

  #find(chatId) {
    return this.#list.querySelector(`li[data-chat-id="${Number(chatId)}"]`);
  }

  #item(chat) {
    const open = h(
      "button",
      { type: "button", class: "chat-link", onclick: () => this.#handlers.onOpen(chat.id) },
      chat.name,
    );
    markLanguage(open, chat.name);
    const tool = (className, symbol, label, onclick) =>
      h(
        "button",
        { type: "button", class: `icon ${className}`, "aria-label": label, title: label, onclick },
        h("span", { "aria-hidden": "true" }, symbol),
      );
    const item = h(
      "li",
      { "data-chat-id": String(chat.id) },
      open,
      tool("chat-rename", "✎", t("renameChat", { name: chat.name }), () => this.#edit(item, chat)),
      tool("chat-delete", "🗑", t("deleteChat", { name: chat.name }), () =>
        this.#handlers.onDelete(chat.id, chat.name),
      ),
    );
    return item;
  }

  /** Rename in place: Enter (not one that confirms an IME conversion) saves, Escape cancels. */
  #edit(item, chat) {
    const input = h("input", {
      type: "text",
      class: "chat-name-input",
      value: chat.name,
      maxLength: 256,
      "aria-label": t("chatName"),
    });
    const editing = h("li", { "data-chat-id": String(chat.id), class: "editing" }, input);
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      const name = input.value.trim();
      editing.replaceWith(item);
      if (save && name && name !== chat.name) this.#handlers.onRename(chat.id, name);
      else item.querySelector(".chat-rename")?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !isComposing(event)) {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    item.replaceWith(editing);
    input.focus();
    input.select();
  }
}
