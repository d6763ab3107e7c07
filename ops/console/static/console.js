// The topics page's live part: each server-sent event carries it rendered (and escaped) by the server.
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const source = new EventSource(live.dataset.stream);
  source.addEventListener("sample", (event) => {
    live.innerHTML = JSON.parse(event.data).html;
    state.textContent = "live";
  });
  source.onerror = () => { state.textContent = "reconnecting"; };
});
