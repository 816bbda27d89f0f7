// Upload page: send each file to POST /api/jobs, poll GET /api/jobs/{id}, show the result.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const styleSelect = $("style"), input = $("files"), drop = $("drop"), list = $("items");
  const zip = $("zip"), empty = $("empty");
  const doneIds = [];
  const waiting = [];
  let active = 0;
  const PARALLEL = 2; // uploads at once; the server queues the rest of the work itself

  fetch("/api/styles").then((r) => r.json()).then((data) => {
    for (const name of data.styles) {
      const option = document.createElement("option");
      option.value = name; option.textContent = name;
      if (name === data.default) option.selected = true;
      styleSelect.appendChild(option);
    }
  });

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(file) {
    const item = el("article", "item");
    const media = el("div", "media");
    const body = el("div", "body");
    const name = el("div", "name", file.name);
    const status = el("div", "status", "waiting to upload");
    const bar = el("div", "bar"); const fill = el("i"); bar.appendChild(fill);
    const actions = el("div", "actions");
    body.append(name, status, bar, actions);
    item.append(media, body);
    if (file.type.startsWith("image/")) {
      const img = el("img"); img.alt = "original"; img.src = URL.createObjectURL(file);
      media.appendChild(img);
    } else {
      media.appendChild(el("span", "tag l", "clip"));
    }
    list.prepend(item);
    empty.classList.add("hidden");
    return { item, media, status, fill, actions, file };
  }

  function setProgress(view, fraction, text) {
    view.fill.style.width = Math.round(Math.max(0, Math.min(1, fraction)) * 100) + "%";
    view.status.textContent = text;
  }

  function fmtTime(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }

  function showResult(view, job) {
    const url = "/api/jobs/" + encodeURIComponent(job.id) + "/result";
    view.item.classList.add("done");
    view.item.dataset.state = "done";
    view.media.textContent = "";
    if (job.kind === "picture") {
      const box = el("div", "compare");
      const before = el("img"); before.alt = "before"; before.src = URL.createObjectURL(view.file);
      const after = el("img", "after"); after.alt = "after"; after.src = url + "?inline=1";
      const handle = el("div", "handle");
      const range = el("input"); range.type = "range"; range.min = 0; range.max = 100; range.value = 50;
      range.setAttribute("aria-label", "before / after");
      range.addEventListener("input", () => box.style.setProperty("--pos", range.value + "%"));
      box.append(before, after, handle, range, el("span", "tag l", "before"), el("span", "tag r", "after"));
      view.media.appendChild(box);
    } else {
      const video = el("video"); video.controls = true; video.playsInline = true; video.src = url + "?inline=1";
      view.media.appendChild(video);
    }
    const link = el("a", "button primary", "Download"); link.href = url; link.setAttribute("download", job.name || "");
    link.className = "button primary download";
    view.actions.appendChild(link);
    const frames = job.kind === "clip" ? job.frames_total + " frames \u00b7 " : "";
    setProgress(view, 1, "done" + (job.cached ? " (from the cache)" : "") + " \u00b7 " + frames + job.style);
    doneIds.push(job.id);
    zip.href = "/api/results.zip?ids=" + doneIds.map(encodeURIComponent).join(",");
    zip.classList.remove("disabled");
  }

  function fail(view, message) {
    view.item.classList.add("failed");
    view.item.dataset.state = "failed";
    setProgress(view, 1, "failed: " + message);
  }

  function poll(view, id) {
    fetch("/api/jobs/" + encodeURIComponent(id)).then((r) => r.json().then((job) => ({ ok: r.ok, job })))
      .then(({ ok, job }) => {
        if (!ok) return fail(view, job.error || "unknown job");
        if (job.state === "done") return showResult(view, job);
        if (job.state === "failed") return fail(view, job.error || "conversion failed");
        let text;
        if (job.state === "queued") text = "queued" + (job.queue_position ? " \u00b7 #" + job.queue_position + " in line" : "");
        else if (job.kind === "clip") {
          text = "converting \u00b7 frame " + job.frames_done + (job.frames_total ? " of " + job.frames_total : "");
          if (job.fps) text += " \u00b7 " + job.fps.toFixed(1) + " fps";
          if (job.eta_s) text += " \u00b7 " + fmtTime(job.eta_s) + " left";
        } else text = "converting";
        setProgress(view, job.state === "queued" ? 0.02 : 0.05 + 0.95 * job.progress, text);
        setTimeout(() => poll(view, id), 400);
      })
      .catch(() => setTimeout(() => poll(view, id), 1500));
  }

  function upload(view, attempt) {
    const form = new FormData();
    form.append("style", styleSelect.value);
    form.append("file", view.file, view.file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress(view, 0.05 * e.loaded / e.total, "uploading " + Math.round(100 * e.loaded / e.total) + "%");
    };
    xhr.onload = () => {
      const job = xhr.response || {};
      if (xhr.status === 429 && attempt < 60) {
        setProgress(view, 0, "the queue is full \u00b7 trying again shortly");
        setTimeout(() => upload(view, attempt + 1), 2000);
        return;
      }
      finish();
      if (xhr.status === 200 && job.state === "done") showResult(view, job);
      else if (xhr.status === 202) poll(view, job.id);
      else fail(view, job.error || "upload refused (HTTP " + xhr.status + ")");
    };
    xhr.onerror = () => { finish(); fail(view, "the server could not be reached"); };
    xhr.send(form);
  }

  function finish() { active -= 1; next(); }
  function next() {
    while (active < PARALLEL && waiting.length) { active += 1; upload(waiting.shift(), 0); }
  }

  function add(files) {
    for (const file of files) waiting.push(card(file));
    next();
  }

  input.addEventListener("change", () => { add(Array.from(input.files)); input.value = ""; });
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); add(Array.from(e.dataTransfer.files)); });
})();
