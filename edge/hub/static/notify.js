// Reaching the officer when the page is not being looked at: a sound and a system
// notification on each new alert, the screen kept awake while signed in, the app installable
// (manifest + service worker) and, where the hub has web push configured, push to a locked
// tablet. Each part degrades on its own: a refused permission or a missing API is a one-line
// note in the app and everything else keeps working.
"use strict";

const notify = {
  audio: null,
  wakeLock: null,
  permission: ("Notification" in window) ? Notification.permission : "unsupported",
  swReg: null,
  notes: {},
};

function noteLine(key, text) {
  notify.notes[key] = text;
  const box = document.querySelector("#notify-notes");
  if (!box) return;
  box.textContent = Object.values(notify.notes).filter(Boolean).join(" ");
  box.hidden = !box.textContent;
}

// A short two-tone chime made with Web Audio: no sound file to ship or cache.
function alertSound() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!notify.audio) notify.audio = new Ctx();
    const ctx = notify.audio;
    if (ctx.state === "suspended") ctx.resume();
    const t0 = ctx.currentTime;
    for (const [i, f] of [[0, 880], [1, 1175]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t0 + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.4, t0 + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.18 + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + i * 0.18);
      osc.stop(t0 + i * 0.18 + 0.17);
    }
  } catch (_) { /* sound is a courtesy; the card and the notification still come */ }
}

// What a lock screen shows can be read by anyone near the tablet: the camera only, never
// the subject's name or picture.
function systemNotification(card) {
  if (notify.permission !== "granted") return;
  const title = "New watchlist alert";
  const opts = { body: "Camera: " + (card.camera || "unknown") + " — open the app to decide",
                 tag: "alert-" + card.alert_id, renotify: true, requireInteraction: true };
  if (notify.swReg && notify.swReg.showNotification) {
    notify.swReg.showNotification(title, opts).catch(() => {});
  } else {
    try { new Notification(title, opts); } catch (_) { /* some browsers: SW only */ }
  }
}

function onNewAlert(card) {
  if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
  alertSound();
  systemNotification(card);
}

async function enableAlerts() {
  // Browsers let a page ask only from a tap: this runs from the "Enable alerts" button.
  if (notify.audio === null) alertSoundUnlock();
  if (!("Notification" in window)) {
    noteLine("perm", "This browser cannot show system notifications; keep the app open.");
    return;
  }
  try {
    notify.permission = await Notification.requestPermission();
  } catch (_) {
    notify.permission = "denied";
  }
  showPermission();
  if (notify.permission === "granted") subscribePush().catch(() => {});
}

function alertSoundUnlock() {
  // iOS/Chrome start audio only after a user gesture: create the context in the tap.
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) notify.audio = new Ctx();
  } catch (_) { notify.audio = null; }
}

function showPermission() {
  const b = document.querySelector("#enable-alerts");
  if (notify.permission === "granted") {
    if (b) b.hidden = true;
    noteLine("perm", "");
  } else if (notify.permission === "denied") {
    if (b) b.hidden = true;
    noteLine("perm", "Notifications are blocked for this site: alerts show only while this page is open (allow them in the browser's site settings).");
  } else if (notify.permission === "unsupported") {
    if (b) b.hidden = true;
    noteLine("perm", "This browser cannot show system notifications; keep the app open.");
  } else if (b) {
    b.hidden = false;
  }
}

async function keepAwake() {
  if (!("wakeLock" in navigator)) {
    noteLine("wake", "This browser cannot keep the screen on: set the tablet's screen timeout.");
    return;
  }
  if (document.visibilityState !== "visible" || notify.wakeLock) return;
  try {
    notify.wakeLock = await navigator.wakeLock.request("screen");
    notify.wakeLock.addEventListener("release", () => { notify.wakeLock = null; });
    noteLine("wake", "");
  } catch (_) {
    noteLine("wake", "The screen may turn off (wake lock refused): set the tablet's screen timeout.");
  }
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    notify.swReg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    await navigator.serviceWorker.ready;
  } catch (_) {
    notify.swReg = null;
  }
}

function b64url(s) {
  const pad = "=".repeat((4 - (s.length % 4)) % 4);
  const raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function subscribePush() {
  if (!notify.swReg || !notify.swReg.pushManager) return;
  const r = await fetch("/api/push/key", { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) return;  // push not configured on this hub: notifications while the app runs
  const { public_key } = await r.json();
  const sub = await notify.swReg.pushManager.subscribe({
    userVisibleOnly: true, applicationServerKey: b64url(public_key) });
  await fetch("/api/push/subscribe", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Edge-Request": "1" },
    body: JSON.stringify(sub.toJSON()),
  });
}

function setTheme(hc) {
  document.documentElement.classList.toggle("hc", hc);
  const b = document.querySelector("#theme-toggle");
  if (b) {
    b.setAttribute("aria-pressed", String(hc));
    b.textContent = hc ? "Dark theme" : "Sunlight theme";
  }
  try { localStorage.setItem("edge-theme", hc ? "hc" : "dark"); } catch (_) { /* private mode */ }
}

function setupNotify() {
  let saved = null;
  try { saved = localStorage.getItem("edge-theme"); } catch (_) { saved = null; }
  const wantHc = saved ? saved === "hc"
    : (window.matchMedia && window.matchMedia("(prefers-contrast: more)").matches);
  setTheme(Boolean(wantHc));
  const t = document.querySelector("#theme-toggle");
  if (t) t.addEventListener("click", () => setTheme(!document.documentElement.classList.contains("hc")));
  const b = document.querySelector("#enable-alerts");
  if (b) b.addEventListener("click", enableAlerts);
  showPermission();
  keepAwake();
  document.addEventListener("visibilitychange", keepAwake);  // the lock drops when hidden
  registerWorker().then(() => {
    if (notify.permission === "granted") subscribePush().catch(() => {});
  });
}

window.edgeNotify = { onNewAlert, setupNotify };
