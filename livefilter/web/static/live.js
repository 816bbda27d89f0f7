// Live page: camera -> JPEG -> WebSocket /api/live -> filtered JPEG -> canvas.
// One frame is in flight at a time and the next one is captured only when the answer is back,
// so the newest camera picture always wins and nothing queues up.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const video = $("cam"), capture = $("capture"), out = $("out"), stage = $("stage"), msg = $("msg");
  const styleSelect = $("style"), toggle = $("toggle"), sbs = $("sbs");
  const MAX_WIDTH = 640;
  const stats = { framesShown: 0, fps: 0, latencyMsP50: 0, latencyMsP95: 0, errors: 0, style: null };
  window.livefilterStats = stats;
  const shownAt = [], latencies = [];
  let ws = null, stream = null, watchdog = null, running = false, inFlight = false, sentAt = 0;
  const cctx = capture.getContext("2d"), octx = out.getContext("2d");

  fetch("/api/styles").then((r) => r.json()).then((data) => {
    for (const name of data.styles) {
      const option = document.createElement("option");
      option.value = name; option.textContent = name;
      if (name === data.default) option.selected = true;
      styleSelect.appendChild(option);
    }
    stats.style = styleSelect.value;
    start();
  });

  function percentile(values, q) {
    if (!values.length) return 0;
    const sorted = values.slice().sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q / 100 * sorted.length))];
  }

  function updateStats() {
    const now = performance.now();
    while (shownAt.length && now - shownAt[0] > 2000) shownAt.shift();
    stats.fps = shownAt.length > 1 ? (shownAt.length - 1) / ((shownAt[shownAt.length - 1] - shownAt[0]) / 1000) : 0;
    stats.latencyMsP50 = percentile(latencies, 50);
    stats.latencyMsP95 = percentile(latencies, 95);
    $("fps").textContent = stats.fps.toFixed(1);
    $("p50").textContent = Math.round(stats.latencyMsP50);
    $("p95").textContent = Math.round(stats.latencyMsP95);
    $("shown").textContent = stats.framesShown;
  }
  setInterval(updateStats, 500);

  function say(text) { msg.textContent = text; msg.classList.toggle("hidden", !text); }

  function sendFrame() {
    if (!running || inFlight || !ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2) return;
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    const w = Math.round(video.videoWidth * scale), h = Math.round(video.videoHeight * scale);
    if (capture.width !== w || capture.height !== h) { capture.width = w; capture.height = h; }
    cctx.drawImage(video, 0, 0, w, h);
    inFlight = true;
    capture.toBlob((blob) => {
      if (!blob || !ws || ws.readyState !== WebSocket.OPEN) { inFlight = false; return; }
      sentAt = performance.now();
      ws.send(blob);
    }, "image/jpeg", 0.8);
  }

  async function draw(blob) {
    const bitmap = await createImageBitmap(blob);
    const side = sbs.checked;
    const stacked = side && stage.parentElement.clientWidth < 600; // phones: one above the other
    const w = bitmap.width, h = bitmap.height;
    const width = side && !stacked ? 2 * w : w, height = stacked ? 2 * h : h;
    if (out.width !== width || out.height !== height) { out.width = width; out.height = height; }
    if (side) {
      octx.drawImage(capture, 0, 0, w, h);
      octx.drawImage(bitmap, stacked ? 0 : w, stacked ? h : 0);
    } else octx.drawImage(bitmap, 0, 0);
    bitmap.close();
    stage.classList.toggle("wide", side && !stacked);
    stage.classList.toggle("tall", stacked);
    say("");
  }

  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/api/live?style=" + encodeURIComponent(styleSelect.value);
    ws = new WebSocket(url);
    ws.binaryType = "blob";
    ws.onopen = () => { inFlight = false; sendFrame(); };
    ws.onmessage = async (event) => {
      if (typeof event.data === "string") {
        const data = JSON.parse(event.data);
        if (data.error) { stats.errors += 1; say(data.error); inFlight = false; setTimeout(sendFrame, 200); }
        if (data.style) stats.style = data.style;
        return;
      }
      const latency = performance.now() - sentAt;
      try { await draw(event.data); } catch (e) { stats.errors += 1; }
      latencies.push(latency);
      if (latencies.length > 200) latencies.shift();
      shownAt.push(performance.now());
      stats.framesShown += 1;
      inFlight = false;
      sendFrame();
    };
    ws.onclose = () => {
      ws = null; inFlight = false;
      if (running) { say("connection lost - reconnecting"); setTimeout(connect, 1000); }
    };
  }

  async function start() {
    if (running) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser cannot share a camera here (it needs http://localhost or https).");
      return;
    }
    say("Waiting for the camera...");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 360 } }, audio: false });
    } catch (e) {
      say("No camera: " + (e.message || e.name) + ". Allow the camera and press Start camera.");
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    running = true;
    toggle.textContent = "Stop camera";
    toggle.classList.remove("primary");
    video.onplaying = sendFrame;
    if (!ws) connect(); else sendFrame();
    if (!watchdog) {
      // A paused tab, a camera hiccup or a lost answer must not stall the loop for good.
      watchdog = setInterval(() => {
        if (running && inFlight && performance.now() - sentAt > 5000) inFlight = false;
        if (running && !inFlight) sendFrame();
      }, 250);
    }
  }

  function stop() {
    running = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    if (ws) ws.close();
    toggle.textContent = "Start camera";
    toggle.classList.add("primary");
    say("Camera stopped.");
  }

  toggle.addEventListener("click", () => (running ? stop() : start()));
  styleSelect.addEventListener("change", () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ style: styleSelect.value }));
  });
})();
