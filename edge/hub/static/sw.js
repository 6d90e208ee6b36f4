// Service worker: makes the app installable, shows pushed notifications, and caches the app
// shell only. Alert data, face images and every /api/ answer always come from the network and
// are never stored on the tablet (a lost tablet must not hold anyone's face).
"use strict";

const SHELL = "edge-shell-v1";
const SHELL_FILES = ["/static/app.css", "/static/app.js", "/static/notify.js",
                     "/static/icon-192.png", "/static/icon-512.png", "/manifest.webmanifest"];

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(caches.keys().then((keys) => Promise.all(
    keys.filter((k) => k !== SHELL).map((k) => caches.delete(k)))).then(() => self.clients.claim()));
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!SHELL_FILES.includes(url.pathname)) return;  // everything else: network only, no cache
  // the shell: network first (fresh code), the cached copy only when the hub is unreachable
  e.respondWith(fetch(e.request).then((r) => {
    if (r.ok) { const copy = r.clone(); caches.open(SHELL).then((c) => c.put(e.request, copy)); }
    return r;
  }).catch(() => caches.match(e.request)));
});

self.addEventListener("push", (e) => {
  let data = {};
  try { data = e.data ? e.data.json() : {}; } catch (_) { data = {}; }
  const title = data.title || "New watchlist alert";
  e.waitUntil(self.registration.showNotification(title, {
    body: data.body || "Open the app to decide", tag: data.tag || "edge-alert",
    renotify: true, requireInteraction: true,
  }));
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  e.waitUntil(self.clients.matchAll({ type: "window" }).then((list) => {
    for (const c of list) if ("focus" in c) return c.focus();
    return self.clients.openWindow("/");
  }));
});
