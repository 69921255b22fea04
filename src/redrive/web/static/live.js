// Live updates: one EventSource per page; the server sends rendered, escaped HTML
// fragments by name, and every element with data-live="NAME" is replaced by its own.
// No inline script anywhere (the CSP forbids it): this module is the page's only code.

const state = document.getElementById("live-state");

function show(text) {
  if (state) state.textContent = text;
}

function apply(frame) {
  for (const el of document.querySelectorAll("[data-live]")) {
    const html = frame[el.dataset.live];
    if (typeof html === "string") el.innerHTML = html;
  }
  show("on " + new Date().toLocaleTimeString());
}

function connect() {
  if (!document.querySelector("[data-live]")) {
    show("off (nothing live on this page)");
    return;
  }
  const source = new EventSource("/events");
  source.onmessage = (event) => apply(JSON.parse(event.data));
  source.onerror = () => show("reconnecting");
  window.addEventListener("pagehide", () => source.close());
}

function selectAll() {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll("input.pick")) box.checked = all.checked;
  });
}

connect();
selectAll();
