// The message box: Enter sends, Shift+Enter starts a new line, and an Enter that confirms an IME
// conversion (Japanese input) never sends. Files are uploaded as soon as they are chosen and sent
// with the next message.
//
//     const composer = new Composer(formElement, { onSend, onStop, upload });
//     composer.setRunning(true);   // Stop instead of Send
//
// Deliberate oddity: a composition is detected three ways — `isComposing`, keyCode 229 (see
// `isComposing` in dom.js), and our own compositionstart/end flag — because browsers disagree on
// which they set.

import { formatBytes, h, isComposing, replace } from "./dom.js";
import { t } from "./i18n.js";

export class Composer {
  #form;
  #input;
  #fileInput;
  #files;
  #send;
  #stop;
  #error;
  #composing = false;
  #running = false;
  #enabled = false;
  #attachments = []; // {file, uploaded: {uuid, …} | null, error: string | null}
  #handlers;

  constructor(form, handlers) {
    this.#form = form;
    this.#handlers = handlers;
    this.#input = form.querySelector("#message");
    this.#fileInput = form.querySelector("#file-input");
    this.#files = form.querySelector("#attachments");
    this.#send = form.querySelector("#send");
    this.#stop = form.querySelector("#stop");
    this.#error = form.querySelector("#composer-error");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
    this.#input.addEventListener("compositionstart", () => {
      this.#composing = true;
    });
    this.#input.addEventListener("compositionend", () => {
      this.#composing = false;
    });
    this.#input.addEventListener("keydown", (event) => this.#onKey(event));
    this.#input.addEventListener("input", () => this.#grow());
    form.querySelector("#attach").addEventListener("click", () => this.#fileInput.click());
    this.#fileInput.addEventListener("change", () => {
      for (const file of this.#fileInput.files) this.#upload(file);
      this.#fileInput.value = "";
    });
    this.#stop.addEventListener("click", () => handlers.onStop());
    this.#sync();
  }

  get text() {
    return this.#input.value;
  }

  focus() {
    this.#input.focus();
  }

  /** Put a suggested question in the box, to edit or send. */
  prefill(text) {
    this.#input.value = text;
    this.#grow();
    this.#input.focus();
  }

  /** Allowed to send at all (a key and an agent are chosen). */
  setEnabled(on) {
    this.#enabled = on;
    this.#sync();
  }

  /** An answer is streaming: Stop replaces Send, and nothing new can be sent. */
  setRunning(on) {
    this.#running = on;
    this.#sync();
    if (!on) this.#stop.disabled = false;
  }

  /** Stop was asked for; the answer ends when the server says so. */
  stopping() {
    this.#stop.disabled = true;
  }

  showError(message) {
    this.#error.textContent = message ?? "";
    this.#error.hidden = !message;
  }

  /** Put a message back after the server refused it. */
  restore(text, attachments) {
    this.#input.value = text;
    this.#attachments = attachments;
    this.#renderFiles();
    this.#grow();
  }

  #onKey(event) {
    if (event.key !== "Enter" || event.shiftKey) return;
    if (isComposing(event) || this.#composing) return;
    event.preventDefault();
    this.#submit();
  }

  #submit() {
    const text = this.#input.value;
    if (!text.trim() || !this.#canSend()) return;
    const attachments = this.#attachments;
    this.showError(null);
    this.#input.value = "";
    this.#attachments = [];
    this.#renderFiles();
    this.#grow();
    this.#handlers.onSend({
      text,
      files: attachments.map((a) => a.uploaded),
      restore: () => this.restore(text, attachments),
    });
  }

  #canSend() {
    return (
      this.#enabled &&
      !this.#running &&
      this.#attachments.every((a) => a.uploaded !== null && a.error === null)
    );
  }

  async #upload(file) {
    const attachment = { file, uploaded: null, error: null };
    this.#attachments = [...this.#attachments, attachment];
    this.#renderFiles();
    try {
      attachment.uploaded = await this.#handlers.upload(file);
    } catch (error) {
      attachment.error = error?.message ?? String(error);
    }
    this.#renderFiles();
  }

  #renderFiles() {
    replace(
      this.#files,
      this.#attachments.map((attachment) => {
        const state = attachment.error ? "failed" : attachment.uploaded ? "ready" : "uploading";
        const remove = h(
          "button",
          {
            type: "button",
            class: "remove",
            "aria-label": t("removeFile", { name: attachment.file.name }),
            onclick: () => {
              this.#attachments = this.#attachments.filter((a) => a !== attachment);
              this.#renderFiles();
            },
          },
          "×",
        );
        return h(
          "li",
          { class: "attachment", "data-state": state },
          h("span", { class: "file-name" }, attachment.file.name),
          h(
            "span",
            { class: "file-size" },
            state === "uploading"
              ? t("uploading")
              : state === "failed"
                ? attachment.error
                : formatBytes(attachment.file.size),
          ),
          remove,
        );
      }),
    );
    this.#files.hidden = this.#attachments.length === 0;
    this.#sync();
  }

  #sync() {
    this.#send.hidden = this.#running;
    this.#stop.hidden = !this.#running;
    this.#send.disabled = !this.#canSend();
    this.#input.disabled = !this.#enabled;
  }

  #grow() {
    this.#input.style.height = "auto";
    this.#input.style.height = `${Math.min(this.#input.scrollHeight, 240)}px`;
  }
}
