// The admin console's only script: local times next to UTC ones, and the status panel's
// optional auto-refresh. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) el.title = "local time: " + when.toLocaleString();
  }
  const box = document.getElementById("autorefresh");
  if (box) {
    const key = "gateway-console-autorefresh";
    box.checked = localStorage.getItem(key) === "1";
    let timer = null;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = box.checked ? setTimeout(() => location.reload(), 10000) : null;
    };
    box.addEventListener("change", () => { localStorage.setItem(key, box.checked ? "1" : "0"); arm(); });
    arm();
  }
});
