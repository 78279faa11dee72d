// Oversight's own behaviour. No inline scripts anywhere (CSP): pages opt in with data- attributes.
"use strict";

(function () {
  // Live status of the inbox's WebSocket, and a catch-up refresh after every reconnect, so a
  // dropped socket never leaves the page missing an event.
  let opened = 0;
  function indicator() {
    const holder = document.querySelector("[data-live-indicator]");
    return holder ? document.getElementById(holder.dataset.liveIndicator) : null;
  }
  document.body.addEventListener("htmx:wsOpen", function () {
    opened += 1;
    document.body.dataset.live = "open";
    const el = indicator();
    if (el) { el.textContent = "Live."; el.classList.remove("offline"); }
    if (opened > 1) { document.body.dispatchEvent(new Event("oversight:resync")); }
  });
  document.body.addEventListener("htmx:wsClose", function () {
    document.body.dataset.live = "closed";
    const el = indicator();
    if (el) { el.textContent = "Live updates paused; refreshing every 30 s."; el.classList.add("offline"); }
  });
})();
