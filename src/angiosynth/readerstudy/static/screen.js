"use strict";

/** The screener page: keep or discard every image, then raters see the kept ones. */
(() => {
  const byId = (id) => document.getElementById(id);
  const viewer = new Viewer(byId("canvas"), byId("window"), byId("level"));
  const saving = new SaveStatus(byId("status"));
  const state = { images: [], answers: {}, index: 0 };

  const currentId = () => state.images[state.index];
  const isDecided = (id) => id in state.answers;

  function render() {
    const answer = state.answers[currentId()];
    const keep = answer ? answer.keep : null;
    for (const [id, value] of [["keep", true], ["discard", false]]) {
      byId(id).classList.toggle("selected", keep === value);
      byId(id).setAttribute("aria-pressed", String(keep === value));
    }
    const total = state.images.length;
    const done = state.images.filter(isDecided).length;
    byId("progress-text").textContent = `Image ${state.index + 1} of ${total} · ${done} decided`;
    byId("progress-bar").style.width = `${(100 * done) / Math.max(total, 1)}%`;
    byId("prev").disabled = state.index === 0;
    document.body.dataset.position = String(state.index + 1);
    document.body.dataset.image = currentId();
  }

  async function show(index) {
    state.index = index;
    Study.message("");
    render();
    await viewer.load(`/api/images/${currentId()}`);
  }

  function decide(keep) {
    const id = currentId();
    const before = state.answers[id];
    state.answers[id] = { keep };
    render();
    saving.track(Study.postJSON(`/api/screening/${id}`, { keep })).catch((error) => {
      if (before === undefined) delete state.answers[id];
      else state.answers[id] = before;
      render();
      Study.message(error.message, "error");
    });
    next();
  }

  function next() {
    if (state.index + 1 < state.images.length) {
      go(state.index + 1);
    } else if (state.images.every(isDecided)) {
      Study.message("Screening complete, thank you. You can still go back and edit.", "done");
    } else {
      Study.message("Some images are not decided yet: go back to them.", "error");
    }
  }

  function previous() {
    if (state.index > 0) go(state.index - 1);
  }

  function go(index) {
    show(index).catch((error) => Study.message(error.message, "error"));
  }

  function handleKey(event) {
    if (leaveKeyAlone(event) || state.images.length === 0) return;
    const key = event.key;
    if (key === "k" || key === "K") decide(true);
    else if (key === "d" || key === "D") decide(false);
    else if (key === "ArrowRight") next();
    else if (key === "ArrowLeft") previous();
    else if (!viewer.handleKey(key)) return;
    event.preventDefault();
  }

  function bindControls() {
    const clicks = { keep: () => decide(true), discard: () => decide(false), next, prev: previous };
    for (const [id, action] of Object.entries(clicks)) {
      byId(id).addEventListener("click", (event) => { event.target.blur(); action(); });
    }
    document.addEventListener("keydown", handleKey);
  }

  async function start() {
    bindControls();
    const data = await Study.getJSON("/api/queue");
    state.images = data.images;
    state.answers = data.answers;
    if (state.images.length === 0) {
      byId("progress-text").textContent = "No images";
      return;
    }
    const open = state.images.findIndex((id) => !isDecided(id));
    await show(open === -1 ? state.images.length - 1 : open);
    if (open === -1) Study.message("Screening complete. You can still edit decisions.", "done");
  }

  start().catch((error) => Study.message(error.message, "error"));
})();
