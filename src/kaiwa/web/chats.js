// The chat list of the sidebar: the key's chats with the chosen agent, newest first, with the
// open one marked (`aria-current`) and titles updated live (`response.chat.title.updated`).
//
//     const chats = new ChatList(listElement, emptyNote, { onOpen: (chatId) => … });
//     chats.show(await client.chats.list({ agentId }).items);
//     chats.rename(chatId, "営業時間について");

import { h, markLanguage, replace } from "./dom.js";

export class ChatList {
  #list;
  #empty;
  #onOpen;
  #active = null;
  #added = new Map();

  constructor(list, empty, { onOpen }) {
    this.#list = list;
    this.#empty = empty;
    this.#onOpen = onOpen;
  }

  show(chats) {
    // A listing fetched before a chat was created here must not drop that chat.
    const listed = new Set(chats.map((chat) => chat.id));
    const added = [...this.#added.values()].filter((chat) => !listed.has(chat.id));
    const all = [...added.reverse(), ...chats];
    replace(
      this.#list,
      all.map((chat) => this.#item(chat)),
    );
    this.#empty.hidden = all.length > 0;
    this.setActive(this.#active);
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
      const button = item.firstElementChild;
      if (Number(item.dataset.chatId) === chatId) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
  }

  rename(chatId, name) {
    const added = this.#added.get(chatId);
    if (added) added.name = name;
    const button = this.#find(chatId)?.firstElementChild;
    if (!button) return;
    button.textContent = name;
    markLanguage(button, name);
  }

  #find(chatId) {
    return this.#list.querySelector(`li[data-chat-id="${Number(chatId)}"]`);
  }

  #item(chat) {
    const button = h(
      "button",
      { type: "button", class: "chat-link", onclick: () => this.#onOpen(chat.id) },
      chat.name,
    );
    markLanguage(button, chat.name);
    return h("li", { "data-chat-id": String(chat.id) }, button);
  }
}
