// What the page remembers, in `sessionStorage` only: it lasts while the tab is open (a reload
// included) and is never written to `localStorage`, so the API key does not outlive the tab.
//
//     session.apiKey = "kw_…";
//     session.running = { chatId, responseId, token, agentId };  // an answer to reattach to
//     session.running = null;

const PREFIX = "kaiwa.";

function read(name) {
  try {
    return window.sessionStorage.getItem(PREFIX + name);
  } catch {
    return null; // storage disabled: the page still works, it just forgets on reload
  }
}

function write(name, value) {
  try {
    if (value === null || value === undefined) window.sessionStorage.removeItem(PREFIX + name);
    else window.sessionStorage.setItem(PREFIX + name, value);
  } catch {
    // as above
  }
}

export const session = {
  get apiKey() {
    return read("apiKey");
  },
  set apiKey(value) {
    write("apiKey", value);
  },

  get agentId() {
    return read("agentId");
  },
  set agentId(value) {
    write("agentId", value);
  },

  get chatId() {
    const value = read("chatId");
    return value === null ? null : Number(value);
  },
  set chatId(value) {
    write("chatId", value === null ? null : String(value));
  },

  /** `{chatId, responseId, token, agentId}` of the answer streaming now, or null. */
  get running() {
    try {
      const value = JSON.parse(read("running") ?? "null");
      return value && typeof value.responseId === "string" ? value : null;
    } catch {
      return null;
    }
  },
  set running(value) {
    write("running", value ? JSON.stringify(value) : null);
  },
};
