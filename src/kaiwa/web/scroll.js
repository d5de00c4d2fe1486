// Keeping the end of the conversation in view: it follows what streams in unless the reader
// scrolled up to read, and follows again once they scroll back to the end.
//
//     const follow = new FollowScroll(conversationBox, messagesElement);
//     follow.toEnd();   // a message was sent, a chat opened: follow from here
//
// It watches sizes (a ResizeObserver), not the stream's events: an answer's markdown is drawn on
// the next animation frame, and its end — sources, usage, buttons — after its last event, so a
// scroll made when an event arrives would stop short of both. The box is watched too: a message
// box that grows, or a window that turns, must not leave the end below the fold.

const NEAR_END_PX = 48;

export class FollowScroll {
  /** Whether the view sticks to the end as the content grows. */
  following = true;
  #box;
  #lastTop = 0;

  constructor(box, content) {
    this.#box = box;
    box.addEventListener("scroll", () => this.#scrolled(), { passive: true });
    const observer = new ResizeObserver(() => {
      if (this.following) this.#jump();
    });
    observer.observe(content);
    observer.observe(box);
  }

  toEnd() {
    this.following = true;
    this.#jump();
  }

  // Only a move up turns following off: a scroll event comes a frame after the scroll, and the
  // content may have grown meanwhile, so a distance from the end alone would mistake the page's
  // own jump to the end for the reader leaving it.
  #scrolled() {
    const top = this.#box.scrollTop;
    if (this.#distanceToEnd() <= NEAR_END_PX) this.following = true;
    else if (top < this.#lastTop) this.following = false;
    this.#lastTop = top;
  }

  #distanceToEnd() {
    const box = this.#box;
    return box.scrollHeight - box.scrollTop - box.clientHeight;
  }

  #jump() {
    this.#box.scrollTop = this.#box.scrollHeight;
  }
}
