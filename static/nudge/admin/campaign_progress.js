// A campaign's progress on its admin page, kept current without reloading: asks
// the progress JSON (apps/campaigns/campaign_pages.py) every few seconds and fills
// the [data-field] elements, the bar and the buttons that fit the status. Stops
// once the campaign is sent or cancelled and offers the report.

const FINAL = new Set(["sent", "cancelled"]);

export function timeLeft(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${minutes % 60} min`;
}

export function fill(root, data) {
  const values = { ...data, time_left: timeLeft(data.seconds_left) };
  // (the banner above the panel names the status too: the whole document)
  for (const el of document.querySelectorAll("[data-field]")) {
    const value = values[el.dataset.field];
    if (value !== undefined && value !== null) el.textContent = String(value);
  }
  const bar = root.querySelector("[data-bar]");
  if (bar) bar.style.width = `${Math.min(100, Math.max(0, data.percent))}%`;
  const meter = root.querySelector('[role="progressbar"]');
  if (meter) meter.setAttribute("aria-valuenow", String(data.percent));
  // (the banner above the panel has some too)
  for (const el of document.querySelectorAll("[data-show-when]")) {
    el.hidden = !el.dataset.showWhen.split(" ").includes(data.status);
  }
  root.dataset.status = data.status;
  if (FINAL.has(data.status)) {
    const done = root.querySelector("[data-when-done]");
    if (done) done.hidden = false;
  }
}

async function poll(root) {
  const every = Number(root.dataset.pollMs) || 2000;
  let failures = 0;
  while (!FINAL.has(root.dataset.status)) {
    await new Promise((resolve) => setTimeout(resolve, every * (1 + failures)));
    try {
      const response = await fetch(root.dataset.progressUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`progress: HTTP ${response.status}`);
      fill(root, await response.json());
      failures = 0;
    } catch (error) {
      // A dropped request (a restarting server) is asked again, less often.
      failures = Math.min(failures + 1, 5);
      console.warn(error);
    }
  }
}

const root = document.getElementById("campaign-progress");
if (root && !FINAL.has(root.dataset.status)) poll(root);
