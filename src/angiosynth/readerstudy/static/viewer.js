"use strict";

/**
 * Shared by the screener and rater pages: the JSON API (with the CSRF header), the saving
 * indicator and the image viewer (zoom, pan, window/level on a canvas).
 */
const Study = {
  csrf: document.querySelector('meta[name="csrf-token"]').content,

  async getJSON(path) {
    const response = await fetch(path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    return Study.checked(response);
  },

  async postJSON(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": Study.csrf,
      },
      body: JSON.stringify(body),
    });
    return Study.checked(response);
  },

  async checked(response) {
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      throw new Error(detail || `HTTP ${response.status}`);
    }
    return data;
  },

  message(text, kind = "info") {
    const element = document.getElementById("message");
    element.textContent = text;
    element.dataset.kind = kind;
  },
};

/** Shows whether answers are being saved; data-state is saving, saved or error. */
class SaveStatus {
  constructor(element) {
    this.element = element;
    this.pending = 0;
  }

  async track(promise) {
    this.pending += 1;
    this.show("saving", "Saving…");
    try {
      const result = await promise;
      this.pending -= 1;
      if (this.pending === 0) this.show("saved", "All answers saved");
      return result;
    } catch (error) {
      this.pending -= 1;
      this.show("error", `Not saved: ${error.message}`);
      throw error;
    }
  }

  show(state, text) {
    this.element.dataset.state = state;
    this.element.textContent = text;
  }
}

/** A grayscale image on a canvas with zoom (wheel, buttons), pan (drag) and window/level. */
class Viewer {
  constructor(canvas, windowInput, levelInput) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.windowInput = windowInput;
    this.levelInput = levelInput;
    this.buffer = document.createElement("canvas");
    this.source = null;
    this.scale = 1;
    this.offsetX = 0;
    this.offsetY = 0;
    this.fitted = true;
    this.drag = null;
    this.ticket = 0;
    this.bindMouse();
    this.bindControls();
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  /** Loads an image URL; resolves once it is drawn (a later load wins over an earlier one). */
  load(url) {
    const ticket = ++this.ticket;
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => {
        if (ticket === this.ticket) this.setImage(image);
        resolve();
      };
      image.onerror = () => reject(new Error("the image could not be loaded"));
      image.src = url;
    });
  }

  setImage(image) {
    const scratch = document.createElement("canvas");
    scratch.width = image.naturalWidth;
    scratch.height = image.naturalHeight;
    const context = scratch.getContext("2d");
    context.drawImage(image, 0, 0);
    this.source = context.getImageData(0, 0, scratch.width, scratch.height);
    this.buffer.width = scratch.width;
    this.buffer.height = scratch.height;
    this.applyWindow();
    this.fit();
    this.canvas.dataset.loaded = image.src;
  }

  /** Maps gray values through the window/level lookup table into the buffer. */
  applyWindow() {
    if (!this.source) return;
    const width = Number(this.windowInput.value);
    const low = Number(this.levelInput.value) - width / 2;
    const table = new Uint8ClampedArray(256);
    for (let value = 0; value < 256; value += 1) {
      table[value] = Math.round(((value - low) / width) * 255);
    }
    const input = this.source.data;
    const output = new ImageData(this.source.width, this.source.height);
    for (let i = 0; i < input.length; i += 4) {
      const gray = table[input[i]];
      output.data[i] = gray;
      output.data[i + 1] = gray;
      output.data[i + 2] = gray;
      output.data[i + 3] = 255;
    }
    this.buffer.getContext("2d").putImageData(output, 0, 0);
    this.render();
  }

  fit() {
    this.fitted = true;
    if (!this.source) return;
    this.scale = Math.min(this.canvas.width / this.source.width,
      this.canvas.height / this.source.height);
    this.offsetX = (this.canvas.width - this.source.width * this.scale) / 2;
    this.offsetY = (this.canvas.height - this.source.height * this.scale) / 2;
    this.render();
  }

  /** Canvas pixels per CSS pixel (sharp images on high-density screens). */
  get density() {
    return window.devicePixelRatio || 1;
  }

  resize() {
    const box = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(box.width * this.density));
    this.canvas.height = Math.max(1, Math.round(box.height * this.density));
    if (this.fitted) this.fit();
    else this.render();
  }

  render() {
    const context = this.context;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.source) return;
    context.imageSmoothingEnabled = this.scale < 2;
    context.setTransform(this.scale, 0, 0, this.scale, this.offsetX, this.offsetY);
    context.drawImage(this.buffer, 0, 0);
    Object.assign(this.canvas.dataset, {
      scale: this.scale.toFixed(4),
      window: this.windowInput.value,
      level: this.levelInput.value,
    });
  }

  /** Zooms by `factor` around the canvas point (x, y) (the centre by default). */
  zoomBy(factor, x = this.canvas.width / 2, y = this.canvas.height / 2) {
    const scale = Math.min(64, Math.max(0.05, this.scale * factor));
    this.offsetX = x - ((x - this.offsetX) * scale) / this.scale;
    this.offsetY = y - ((y - this.offsetY) * scale) / this.scale;
    this.scale = scale;
    this.fitted = false;
    this.render();
  }

  /** Back to the whole image at the full gray range. */
  reset() {
    this.windowInput.value = 255;
    this.levelInput.value = 128;
    this.applyWindow();
    this.fit();
  }

  bindMouse() {
    const canvas = this.canvas;
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const density = this.density;
      this.zoomBy(Math.exp(-event.deltaY * 0.0015), event.offsetX * density,
        event.offsetY * density);
    }, { passive: false });
    canvas.addEventListener("contextmenu", (event) => event.preventDefault());
    canvas.addEventListener("mousedown", (event) => {
      event.preventDefault();
      this.drag = { button: event.button, x: event.clientX, y: event.clientY };
    });
    window.addEventListener("mousemove", (event) => this.dragTo(event));
    window.addEventListener("mouseup", () => { this.drag = null; });
  }

  dragTo(event) {
    if (!this.drag) return;
    const dx = event.clientX - this.drag.x;
    const dy = event.clientY - this.drag.y;
    this.drag.x = event.clientX;
    this.drag.y = event.clientY;
    if (this.drag.button === 2) {
      this.windowInput.value = Number(this.windowInput.value) + dx;
      this.levelInput.value = Number(this.levelInput.value) + dy;
      this.applyWindow();
    } else {
      this.offsetX += dx * this.density;
      this.offsetY += dy * this.density;
      this.fitted = false;
      this.render();
    }
  }

  bindControls() {
    document.getElementById("zoom-in").addEventListener("click", () => this.zoomBy(1.25));
    document.getElementById("zoom-out").addEventListener("click", () => this.zoomBy(0.8));
    document.getElementById("view-reset").addEventListener("click", () => this.reset());
    for (const input of [this.windowInput, this.levelInput]) {
      input.addEventListener("input", () => this.applyWindow());
      input.addEventListener("change", () => input.blur());
    }
  }

  /** The viewer's keys (+, -, 0); returns whether the key was one of them. */
  handleKey(key) {
    if (key === "+" || key === "=") this.zoomBy(1.25);
    else if (key === "-" || key === "_") this.zoomBy(0.8);
    else if (key === "0") this.reset();
    else return false;
    return true;
  }
}

/** Whether a key event should be left to the page element that has focus. */
function leaveKeyAlone(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return true;
  const target = event.target;
  return target instanceof HTMLInputElement && target.type === "range";
}
