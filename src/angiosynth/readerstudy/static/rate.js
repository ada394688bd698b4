"use strict";

/** The rater page: one kept image at a time, three segment scores and the external flag. */
(() => {
  const SEGMENTS = ["proximal", "medium", "peripheral"];
  const byId = (id) => document.getElementById(id);
  const viewer = new Viewer(byId("canvas"), byId("window"), byId("level"));
  const saving = new SaveStatus(byId("status"));
  const state = { images: [], answers: {}, index: 0, focus: 0 };

  const currentId = () => state.images[state.index];

  function answerOf(id) {
    if (!state.answers[id]) state.answers[id] = { scores: {}, external: false };
    return state.answers[id];
  }

  function isComplete(id) {
    const answer = state.answers[id];
    return Boolean(answer) && SEGMENTS.every((segment) => segment in answer.scores);
  }

  function renderAnswers() {
    const answer = answerOf(currentId());
    SEGMENTS.forEach((segment, index) => {
      const field = byId(`segment-${segment}`);
      field.classList.toggle("focused", index === state.focus);
      for (const button of field.querySelectorAll("button.score")) {
        const chosen = answer.scores[segment] === button.dataset.score;
        button.classList.toggle("selected", chosen);
        button.setAttribute("aria-pressed", String(chosen));
      }
    });
    byId("external").checked = answer.external;
  }

  function renderProgress() {
    const total = state.images.length;
    const done = state.images.filter(isComplete).length;
    byId("progress-text").textContent = `Image ${state.index + 1} of ${total} · ${done} rated`;
    byId("progress-bar").style.width = `${(100 * done) / Math.max(total, 1)}%`;
    byId("prev").disabled = state.index === 0;
    document.body.dataset.position = String(state.index + 1);
    document.body.dataset.image = currentId();
  }

  async function show(index) {
    state.index = index;
    const answer = answerOf(currentId());
    const open = SEGMENTS.findIndex((segment) => !(segment in answer.scores));
    state.focus = open === -1 ? 0 : open;
    Study.message("");
    renderAnswers();
    renderProgress();
    await viewer.load(`/api/images/${currentId()}`);
  }

  function save(id, body, undo) {
    saving.track(Study.postJSON(`/api/ratings/${id}`, body)).catch((error) => {
      undo();
      renderAnswers();
      renderProgress();
      Study.message(error.message, "error");
    });
  }

  function setScore(segmentIndex, score) {
    const id = currentId();
    const segment = SEGMENTS[segmentIndex];
    const answer = answerOf(id);
    const before = answer.scores[segment];
    answer.scores[segment] = score;
    state.focus = Math.min(segmentIndex + 1, SEGMENTS.length - 1);
    renderAnswers();
    renderProgress();
    save(id, { scores: { [segment]: score } }, () => {
      if (before === undefined) delete answer.scores[segment];
      else answer.scores[segment] = before;
    });
  }

  function setExternal(external) {
    const id = currentId();
    const answer = answerOf(id);
    answer.external = external;
    renderAnswers();
    save(id, { external }, () => { answer.external = !external; });
  }

  function next() {
    if (!isComplete(currentId())) {
      Study.message("Answer all three segments first.", "error");
    } else if (state.index + 1 < state.images.length) {
      go(state.index + 1);
    } else {
      Study.message("All images are rated, thank you. You can still go back and edit.", "done");
    }
  }

  function previous() {
    if (state.index > 0) go(state.index - 1);
  }

  function go(index) {
    show(index).catch((error) => Study.message(error.message, "error"));
  }

  function focusSegment(index) {
    state.focus = Math.max(0, Math.min(SEGMENTS.length - 1, index));
    renderAnswers();
  }

  function handleKey(event) {
    if (leaveKeyAlone(event) || state.images.length === 0) return;
    const key = event.key;
    if (/^[1-5]$/.test(key)) setScore(state.focus, key);
    else if (key === "n" || key === "N") setScore(state.focus, "NP");
    else if (key === "a" || key === "A") setScore(state.focus, "NA");
    else if (key === "ArrowUp") focusSegment(state.focus - 1);
    else if (key === "ArrowDown") focusSegment(state.focus + 1);
    else if (key === "e" || key === "E") setExternal(!answerOf(currentId()).external);
    else if (key === "Enter" || key === "ArrowRight") next();
    else if (key === "Backspace" || key === "ArrowLeft") previous();
    else if (!viewer.handleKey(key)) return;
    event.preventDefault();
  }

  function bindControls() {
    SEGMENTS.forEach((segment, index) => {
      const field = byId(`segment-${segment}`);
      field.addEventListener("click", () => focusSegment(index));
      for (const button of field.querySelectorAll("button.score")) {
        button.addEventListener("click", (event) => {
          event.stopPropagation();
          button.blur();
          setScore(index, button.dataset.score);
        });
      }
    });
    byId("external").addEventListener("change", (event) => {
      event.target.blur();
      setExternal(event.target.checked);
    });
    byId("next").addEventListener("click", (event) => { event.target.blur(); next(); });
    byId("prev").addEventListener("click", (event) => { event.target.blur(); previous(); });
    document.addEventListener("keydown", handleKey);
  }

  async function start() {
    bindControls();
    const data = await Study.getJSON("/api/queue");
    state.images = data.images;
    state.answers = data.answers;
    if (state.images.length === 0) {
      byId("progress-text").textContent = "No images yet";
      Study.message(data.screening_complete ? "No images were kept for rating."
        : "No images to rate yet: screening is in progress. Reload later.", "info");
      return;
    }
    const open = state.images.findIndex((id) => !isComplete(id));
    await show(open === -1 ? state.images.length - 1 : open);
    if (open === -1) Study.message("All images are rated, thank you. You can still edit.", "done");
    else if (!data.screening_complete) {
      Study.message("Screening is in progress: more images may follow.", "info");
    }
  }

  start().catch((error) => Study.message(error.message, "error"));
})();
