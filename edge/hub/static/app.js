// Tablet client: live alert queue over SSE, one card per alert id, three decisions.
// No framework, no build step, no network beyond the hub (the deployment network is closed).
// All text goes in via textContent (never innerHTML) so alert fields cannot inject markup.
"use strict";

const state = {
  cards: new Map(),      // alert_id -> {el, card}
  groups: new Map(),     // subject key -> group element (open alerts only)
  cameras: "",           // the camera filter's option list, as a key
  nodes: [],
  hubOk: false,
  lostAfter: 5,
  serverSkew: 0,         // server_time - Date.now()/1000
  officer: "",           // signed-in officer (only they may undo their own decision)
  outcomes: [],          // the hub's fixed outcome list
  es: null,
  deployment: "",        // the deployment filter ("" = all)
  deployments: [],       // the hub's /api/deployments (alert counts per deployment)
  depKey: "",            // the deployment list shown, as a key
  depTimer: null,        // a pending /api/deployments fetch
  page: null,            // the alert list's paging: {cursor: [received_at, alert_id], more}
};

const PAGE = 200;        // alerts fetched per page of the list

const $ = (sel) => document.querySelector(sel);

function fmtTime(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function ago(t) {
  const s = Math.max(0, Math.round(Date.now() / 1000 + state.serverSkew - t));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}

const DECISION_TEXT = { confirm: "Confirmed (engaged)", reject: "Rejected (false alert)", no_action: "No action" };

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, opts || {}));
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  return r;
}

function setImg(img, url, box) {
  if (url) {
    img.src = url;
  } else {
    img.remove();
    box.textContent = "image removed";
  }
}

function buildCard(card, isNew) {
  const el = $("#card-tpl").content.firstElementChild.cloneNode(true);
  el.dataset.alertId = card.alert_id;
  const probe = el.querySelector("img.probe");
  const ref = el.querySelector("img.reference");
  let pendingImgs = 0;
  const onImg = () => { pendingImgs -= 1; if (pendingImgs <= 0) el.dataset.imagesAt = String(Date.now()); };
  for (const [img, url] of [[probe, card.probe_url], [ref, card.reference_url]]) {
    if (url) { pendingImgs += 1; img.addEventListener("load", onImg, { once: true }); img.addEventListener("error", onImg, { once: true }); }
  }
  setImg(probe, card.probe_url, probe.parentElement);
  setImg(ref, card.reference_url, ref.parentElement);
  el.querySelector(".name").textContent = card.display_name;
  el.querySelector(".category").textContent = card.category || "";
  // A cosine similarity, not a probability: show it as one, with the alert threshold beside it.
  el.querySelector(".score").textContent = "similarity " + Number(card.score).toFixed(2) +
    " (alerts at " + Number(card.threshold).toFixed(2) + ")";
  el.querySelector(".camera").textContent = card.camera + (card.node_id ? "  ·  " + card.node_id : "");
  el.querySelector(".time").dataset.t = String(card.captured_at);
  for (const b of el.querySelectorAll("button.act")) {
    b.addEventListener("click", () => decide(card.alert_id, b.dataset.decision, el));
  }
  if (isNew) el.classList.add("new");
  return el;
}

const OUTCOME_TEXT = { spoken_to: "Spoken to", arrested: "Arrested", wrong_person: "Wrong person",
                       no_further_action: "No further action", other: "Other" };

function undoLeft(card) {
  return card.undo_until ? card.undo_until - (Date.now() / 1000 + state.serverSkew) : 0;
}

function applyDecision(el, card) {
  const acts = el.querySelector(".actions");
  if (acts) acts.remove();
  const res = el.querySelector(".result");
  res.className = "result";
  res.textContent = "";
  const tag = document.createElement("span");
  tag.className = "decision-tag " + card.decision;
  tag.textContent = DECISION_TEXT[card.decision] + " · " + card.officer + " · " + fmtTime(card.decision_at);
  res.appendChild(tag);
  // A short undo window for a mis-tap; then the decision is final and goes to the node.
  if (undoLeft(card) > 0 && card.officer === state.officer) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "undo";
    b.addEventListener("click", () => undo(card.alert_id, el));
    res.appendChild(b);
    updateUndo(el, card);
  }
  if (card.outcome) {
    const o = document.createElement("span");
    o.className = "outcome-tag";
    o.textContent = "Outcome: " + (OUTCOME_TEXT[card.outcome] || card.outcome) + " · " + fmtTime(card.outcome_at);
    res.appendChild(o);
  } else if (card.finalized && state.outcomes.length) {
    // optional, from a fixed list (never free text): goes into the audit log and the record
    const box = document.createElement("div");
    box.className = "outcomes";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Outcome (optional)");
    const lab = document.createElement("span");
    lab.className = "outcomes-label";
    lab.textContent = "Outcome (optional):";
    box.appendChild(lab);
    for (const v of state.outcomes) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "outcome";
      b.dataset.outcome = v;
      b.textContent = OUTCOME_TEXT[v] || v;
      b.addEventListener("click", () => setOutcome(card.alert_id, v, el));
      box.appendChild(b);
    }
    res.appendChild(box);
  }
  el.classList.remove("new");
  el.dataset.decision = card.decision;
  el.dataset.final = card.finalized ? "1" : "0";
  if (!card.probe_url) {
    const img = el.querySelector("img.probe");
    if (img) setImg(img, null, img.parentElement);
  }
}

function updateUndo(el, card) {
  const b = el.querySelector("button.undo");
  if (!b) return;
  const exact = undoLeft(card);
  if (exact <= 0) { b.remove(); return; }
  const left = Math.max(1, Math.round(exact));  // rounds off the few ms of clock-skew estimate
  b.textContent = "Undo (" + left + " s)";
}

async function postJson(path, payload) {
  const r = await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Edge-Request": "1" },
    body: JSON.stringify(payload),
  });
  return [r, await r.json().catch(() => ({}))];
}

async function undo(alertId, el) {
  const b = el.querySelector("button.undo");
  if (b) b.disabled = true;
  try {
    const [r, body] = await postJson("/api/alerts/" + alertId + "/undo", {});
    if (r.ok && body.card) { upsert(body.card, false); return; }
    const res = el.querySelector(".result");
    if (b) b.remove();
    const note = document.createElement("span");
    note.className = "result-note";
    note.textContent = body.detail ? "Not undone: " + body.detail : "Not undone (hub answered " + r.status + ")";
    res.appendChild(note);
  } catch (_) {
    if (b) b.disabled = false;
  }
}

async function setOutcome(alertId, outcome, el) {
  const box = el.querySelector(".outcomes");
  if (box) box.querySelectorAll("button").forEach((x) => { x.disabled = true; });
  try {
    const [r, body] = await postJson("/api/alerts/" + alertId + "/outcome", { outcome });
    if (body.card) { upsert(body.card, false); return; }
    throw new Error("hub answered " + r.status);
  } catch (e) {
    if (box) box.querySelectorAll("button").forEach((x) => { x.disabled = false; });
  }
}

function upsert(card, live, quiet) {
  const have = state.cards.get(card.alert_id);
  if (!have) {
    const el = buildCard(card, live && !card.decision);
    el.dataset.via = live ? "live" : "list";  // benchmarks time only live arrivals
    state.cards.set(card.alert_id, { el, card });
    if (card.decision) {
      applyDecision(el, card);
      insertSorted($("#decided"), el, card.decision_at);
    } else {
      $("#held").appendChild(el);  // renderOpen() places it in its subject's group
    }
    if (live) {
      // Stamp when the card has been laid out and painted (two animation frames).
      requestAnimationFrame(() => requestAnimationFrame(() => { el.dataset.renderedAt = String(Date.now()); }));
      if (!card.decision && window.edgeNotify) window.edgeNotify.onNewAlert(card);
    } else {
      el.dataset.renderedAt = String(Date.now());
    }
  } else if (card.decision && !have.card.decision) {
    have.card = card;
    applyDecision(have.el, card);
    insertSorted($("#decided"), have.el, card.decision_at);
  } else if (!card.decision && have.card.decision) {
    // undone: back to the open queue with its buttons, as it arrived
    have.el.remove();
    state.cards.delete(card.alert_id);
    upsert(card, false);
    return;
  } else if (card.decision && (card.finalized !== have.card.finalized || card.outcome !== have.card.outcome)) {
    have.card = card;
    applyDecision(have.el, card);
  }
  if (quiet) return;  // a page of the list: rendered once at its end
  renderOpen();
  refresh();
  if (live) scheduleDeployments();
}

// -- several deployments (a control-room hub): a selector and one line per deployment --------

function deploymentNames() {
  const names = new Set(state.deployments.map((d) => d.deployment_id));
  for (const { card } of state.cards.values()) if (card.deployment_id) names.add(card.deployment_id);
  for (const n of state.nodes) if (n.deployment) names.add(n.deployment);
  return [...names].sort();
}

function scheduleDeployments() {
  if (state.depTimer) return;
  state.depTimer = setTimeout(() => { state.depTimer = null; loadDeployments().catch(() => {}); }, 300);
}

async function loadDeployments() {
  const r = await api("/api/deployments");
  if (!r.ok) return;
  state.deployments = (await r.json()).deployments || [];
  renderDeployments();
}

function pickDeployment(dep) {
  if (state.deployment === dep) return;
  state.deployment = dep;
  $("#deployment-filter").value = dep;
  state.cameras = "";  // the camera list is the deployment's
  renderOpen();
  refresh();
  renderDeployments();
  reload().catch(() => {});  // that deployment's newest alerts, then its pages
}

function cameraSummary(nodes) {
  const by = new Map();
  let total = 0;
  for (const n of nodes) {
    for (const c of n.cameras || []) {
      const st = n.online ? c.state : "unknown";
      by.set(st, (by.get(st) || 0) + 1);
      total += 1;
    }
  }
  if (!total) return ["no camera health reported", false];
  const order = ["up", "down", "failed", "connecting", "unknown", "ended"];
  const parts = [...by.entries()].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
    .map(([st, k]) => k + " " + st);
  return ["cameras: " + parts.join(", "), [...by.keys()].some((st) => st !== "up" && st !== "ended")];
}

// Shown only when the hub has more than one deployment: a selector (with the camera filter)
// and per deployment its open alerts, nodes online and camera health, live from the status
// events; the alert counts come from the hub (/api/deployments), not from the cards loaded.
function renderDeployments() {
  const names = deploymentNames();
  const many = names.length > 1;
  const box = $("#deployments");
  const sel = $("#deployment-filter");
  box.hidden = !many;
  for (const el of document.querySelectorAll(".dep-tool")) el.hidden = !many;
  if (!many) { box.textContent = ""; state.depKey = ""; return; }
  if (state.deployment && !names.includes(state.deployment)) names.push(state.deployment);
  const key = JSON.stringify(names);
  if (key !== state.depKey) {
    state.depKey = key;
    while (sel.options.length > 1) sel.remove(1);
    box.textContent = "";
    for (const dep of names) {
      const o = document.createElement("option");
      o.value = dep;
      o.textContent = dep;
      sel.appendChild(o);
      const row = document.createElement("div");
      row.className = "dep";
      row.dataset.deployment = dep;
      row.setAttribute("role", "group");
      row.setAttribute("aria-label", "Deployment " + dep);
      const b = document.createElement("button");
      b.type = "button";
      b.className = "dep-pick";
      b.textContent = dep;
      b.title = "Show only this deployment (again: all deployments)";
      b.addEventListener("click", () => pickDeployment(state.deployment === dep ? "" : dep));
      row.appendChild(b);
      for (const cls of ["dep-alerts", "dep-nodes", "dep-cameras"]) {
        const sp = document.createElement("span");
        sp.className = cls;
        row.appendChild(sp);
      }
      box.appendChild(row);
    }
  }
  sel.value = state.deployment;
  const server = new Map(state.deployments.map((d) => [d.deployment_id, d]));
  for (const row of box.children) {
    const dep = row.dataset.deployment;
    const d = server.get(dep);
    let open = 0;
    let all = 0;
    for (const { card } of state.cards.values()) {
      if (card.deployment_id !== dep) continue;
      all += 1;
      if (!card.decision) open += 1;
    }
    // the hub's counts cover every alert it holds; the cards here may be only the newest pages
    if (d) { open = Math.max(open, d.open_alerts); all = Math.max(all, d.alerts); }
    row.querySelector(".dep-alerts").textContent = open + " open · " + all + " alert" + (all === 1 ? "" : "s");
    const nodes = state.nodes.filter((n) => n.deployment === dep);
    const online = nodes.filter((n) => n.online).length;
    row.querySelector(".dep-nodes").textContent = "nodes " + online + "/" + nodes.length + " online";
    const [text, bad] = cameraSummary(nodes);
    const cams = row.querySelector(".dep-cameras");
    cams.textContent = text;
    cams.classList.toggle("bad", bad || online < nodes.length);
    row.querySelector(".dep-pick").setAttribute("aria-pressed", String(state.deployment === dep));
  }
}

function subjectKey(card) { return card.subject_id || card.display_name || card.alert_id; }

function buildGroup(key) {
  const g = $("#group-tpl").content.firstElementChild.cloneNode(true);
  g.dataset.subject = key;
  g.querySelector(".group-more").addEventListener("click", () => {
    g.classList.toggle("expanded");
    renderOpen();
  });
  return g;
}

// Keep `child` at position `before` in `parent` without moving nodes that are already in place
// (a move restarts animations and costs layout).
function placeAt(parent, child, before) {
  if (child.parentNode !== parent || child.nextSibling !== before) parent.insertBefore(child, before);
}

function inDeployment(card) { return !state.deployment || card.deployment_id === state.deployment; }

function updateCameraFilter() {
  const sel = $("#camera-filter");
  const cams = new Set();
  for (const { card } of state.cards.values()) if (card.camera && inDeployment(card)) cams.add(card.camera);
  if (sel.value) cams.add(sel.value);
  const list = [...cams].sort();
  const key = JSON.stringify(list);
  if (key === state.cameras) return;
  state.cameras = key;
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const c of list) {
    const o = document.createElement("option");
    o.value = c;
    o.textContent = c;
    sel.appendChild(o);
  }
  sel.value = keep;
}

// Open alerts, one group per subject (newest photo pair in front, earlier ones folded), groups
// ordered by their oldest open alert so the longest-waiting subject is at the top. Alerts from
// other cameras than the filter's wait in #held (hidden), so they are not lost.
function renderOpen() {
  updateCameraFilter();
  const cam = $("#camera-filter").value;
  const groups = new Map();
  const held = $("#held");
  for (const { el, card } of state.cards.values()) {
    const off = (!!cam && card.camera !== cam) || !inDeployment(card);
    if (card.decision) { el.classList.toggle("filtered", off); continue; }
    if (off) { if (el.parentNode !== held) held.appendChild(el); continue; }
    const key = subjectKey(card);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push({ el, card });
  }
  const list = [...groups.entries()].map(([key, items]) => {
    items.sort((a, b) => (b.card.received_at - a.card.received_at) || (a.card.alert_id < b.card.alert_id ? -1 : 1));
    return { key, items, oldest: items[items.length - 1].card.received_at };
  });
  list.sort((a, b) => (a.oldest - b.oldest) || (a.key < b.key ? -1 : 1));
  const open = $("#open");
  let prev = null;
  const seen = new Set();
  for (const g of list) {
    seen.add(g.key);
    let gel = state.groups.get(g.key);
    if (!gel) { gel = buildGroup(g.key); state.groups.set(g.key, gel); }
    const lead = g.items[0].card;
    const n = g.items.length;
    gel.dataset.count = String(n);
    gel.dataset.oldest = String(g.oldest);
    gel.querySelector(".group-name").textContent = lead.display_name;
    gel.querySelector(".group-count").textContent = n + " open";
    const since = gel.querySelector(".group-since");
    since.dataset.t = String(g.oldest);
    const box = gel.querySelector(".group-cards");
    let before = box.firstChild;
    g.items.forEach(({ el }, i) => {
      placeAt(box, el, before);
      before = el.nextSibling;
      el.classList.toggle("lead", i === 0);
      el.classList.toggle("older", i > 0);
    });
    const more = gel.querySelector(".group-more");
    more.hidden = n < 2;
    more.textContent = gel.classList.contains("expanded") ? "Hide earlier alerts"
      : "Show " + (n - 1) + " earlier alert" + (n > 2 ? "s" : "");
    more.setAttribute("aria-expanded", String(gel.classList.contains("expanded")));
    placeAt(open, gel, prev ? prev.nextSibling : open.firstChild);
    prev = gel;
  }
  for (const [key, gel] of state.groups) {
    if (!seen.has(key)) { gel.remove(); state.groups.delete(key); }
  }
}

function openZoom(img) {
  const z = $("#zoom");
  const big = z.querySelector("img");
  big.src = img.getAttribute("src");
  big.alt = img.alt + " (enlarged)";
  z.hidden = false;
  z.focus();
}

function closeZoom() {
  const z = $("#zoom");
  if (z.hidden) return;
  z.hidden = true;
  z.querySelector("img").removeAttribute("src");
}

function setupZoom() {
  const z = $("#zoom");
  z.tabIndex = -1;
  document.addEventListener("click", (e) => {
    const img = e.target.closest ? e.target.closest("img.zoomable") : null;
    if (img && img.getAttribute("src")) openZoom(img);
  });
  z.addEventListener("click", closeZoom);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { closeZoom(); return; }
    if ((e.key === "Enter" || e.key === " ") && e.target.matches && e.target.matches("img.zoomable")) {
      e.preventDefault();
      openZoom(e.target);
    }
  });
}

function insertSorted(container, el, key) {
  el.dataset.sortKey = String(key || 0);
  for (const other of container.children) {
    if (Number(other.dataset.sortKey) < key) { container.insertBefore(el, other); return; }
  }
  container.appendChild(el);
}

async function decide(alertId, decision, el) {
  const buttons = el.querySelectorAll("button.act");
  buttons.forEach((b) => { b.disabled = true; });
  const res = el.querySelector(".result");
  res.className = "result";
  res.textContent = "sending…";
  try {
    const r = await api("/api/alerts/" + alertId + "/decision", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Edge-Request": "1" },
      body: JSON.stringify({ decision }),
    });
    const body = await r.json().catch(() => ({}));
    if ((r.ok || r.status === 409) && body.card) {
      upsert(body.card, false);
      if (r.status === 409) res.textContent = "Already decided by " + body.card.officer;
      return;
    }
    throw new Error("hub answered " + r.status);
  } catch (e) {
    res.className = "result err";
    res.textContent = "Not sent (" + e.message + "). Try again.";
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function refresh() {
  let open = 0;
  // the selected deployment's open alerts only: the header says what the page shows
  for (const { card } of state.cards.values()) if (!card.decision && inDeployment(card)) open += 1;
  const shown = $("#open").querySelectorAll("article").length;
  $("#open-count").textContent = open + " open";
  const empty = $("#empty");
  empty.textContent = open ? (state.deployment && !$("#camera-filter").value
    ? "No open alerts in this deployment." : "No open alerts on this camera.") : "No open alerts.";
  empty.style.display = shown ? "none" : "block";
  $(".decided-title").style.display = $("#decided").children.length ? "block" : "none";
  for (const t of document.querySelectorAll(".time")) {
    const v = Number(t.dataset.t);
    if (v) t.textContent = fmtTime(v) + "  (" + ago(v) + ")";
  }
  for (const { el, card } of state.cards.values()) if (card.undo_until) updateUndo(el, card);
  for (const t of document.querySelectorAll(".group-since")) {
    const v = Number(t.dataset.t);
    if (v) t.textContent = "waiting since " + fmtTime(v);
  }
  renderBanners();
}

function fmtDur(sec) {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}

const CAMERA_TITLE = { down: "Camera down", connecting: "Camera connecting", failed: "Camera failed",
                       unknown: "Camera status unknown", ended: "Camera ended" };

// One banner per camera that is not up on a node that is heard. "ended" (a file that finished)
// is a quiet note, not an alarm. Cameras of a lost node are named in the node-lost banner.
function cameraBanner(n, c) {
  if (c.state === "up") return null;
  const label = c.label || c.name;
  const quiet = c.last_frame_age_s == null ? "no frame yet" : "no frames for " + fmtDur(c.last_frame_age_s);
  let text = (CAMERA_TITLE[c.state] || "Camera " + c.state) + ": " + label;
  if (c.state !== "ended" && c.state !== "unknown") text += " (" + quiet + ")";
  if (c.reason && c.reason.toLowerCase() !== quiet) text += " — " + c.reason;
  const cls = c.state === "ended" ? "banner note camera"
    : (c.state === "connecting" || c.state === "unknown") ? "banner warn camera" : "banner camera";
  return [cls, text, { node: n.node_id, camera: c.name, state: c.state, deployment: n.deployment }];
}

function renderBanners() {
  const box = $("#banners");
  const items = [];
  const many = deploymentNames().length > 1;
  const nodes = state.nodes.filter((n) => !state.deployment || n.deployment === state.deployment);
  const named = (n, text) => (many && n.deployment ? n.deployment + " · " + text : text);
  if (!state.hubOk) items.push(["banner", "Connection to the hub lost — reconnecting… New alerts will not appear until it is back."]);
  if (state.hubOk) {
    // a node that said it stopped is a quiet note with when and why; only silence is "lost"
    for (const n of nodes.filter((x) => !x.online && x.stopped)) {
      const label = (n.camera ? n.camera + " (" + n.node_id + ")" : n.node_id);
      items.push(["banner note stopped", named(n, "Camera node stopped: " + label) + " at " + fmtTime(n.stopped.at)
        + " (" + (n.stopped.reason || "stopped") + "). No alerts from it until it starts again.",
        { node: n.node_id, camera: "", state: "stopped", deployment: n.deployment }]);
    }
    const lost = nodes.filter((n) => !n.online && !n.stopped);
    for (const n of lost) {
      const label = (n.camera ? n.camera + " (" + n.node_id + ")" : n.node_id);
      const when = n.last_seen ? "last heard " + fmtTime(n.last_seen) + ", " + ago(n.last_seen) : "not heard since the hub started";
      const cams = (n.cameras || []).map((c) => c.label || c.name);
      const which = cams.length ? " Cameras: " + cams.join(", ") + "." : "";
      items.push(["banner", named(n, "Camera node lost: " + label + " — " + when + ". Alerts from it cannot arrive." + which),
        { node: n.node_id, camera: "", state: "lost", deployment: n.deployment }]);
    }
    for (const n of nodes.filter((x) => x.online)) {
      for (const c of n.cameras || []) {
        const b = cameraBanner(n, c);
        if (b) items.push([b[0], named(n, b[1]), b[2]]);
      }
    }
    if (!nodes.length) {
      items.push(["banner warn", state.deployment ? "No camera node of " + state.deployment
        + " has connected yet." : "No camera node has connected yet."]);
    }
  }
  // the same message once, however many sources raise it (two nodes naming one camera...)
  const seen = new Set();
  const unique = items.filter((it) => !seen.has(it[1]) && seen.add(it[1]));
  const key = JSON.stringify(unique);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.textContent = "";
  for (const [cls, text, cam] of unique) {
    const d = document.createElement("div");
    d.className = cls;
    d.textContent = text;
    if (cam) {
      d.dataset.node = cam.node;
      d.dataset.camera = cam.camera;
      d.dataset.state = cam.state;
      if (cam.deployment) d.dataset.deployment = cam.deployment;
    }
    box.appendChild(d);
  }
}

function setHub(ok) {
  state.hubOk = ok;
  const p = $("#hub-state");
  p.className = "pill " + (ok ? "pill-ok" : "pill-bad");
  p.textContent = ok ? "hub connected" : "hub offline";
  renderBanners();
}

function listUrl(cursor) {
  let q = "/api/alerts?limit=" + PAGE;
  if (state.deployment) q += "&deployment=" + encodeURIComponent(state.deployment);
  if (cursor) q += "&before=" + encodeURIComponent(String(cursor[0])) + "&before_id=" + encodeURIComponent(cursor[1]);
  return q;
}

// One page of the alert list (newest first), shown at once; the button asks for the next.
async function loadPage(cursor) {
  const dep = state.deployment;
  const r = await api(listUrl(cursor));
  const body = await r.json();
  state.serverSkew = body.server_time - Date.now() / 1000;
  // Oldest first so live ordering is preserved; upsert ignores cards already shown.
  for (const c of body.alerts.slice().reverse()) upsert(c, false, true);
  renderOpen();
  refresh();
  renderDeployments();
  if (dep !== state.deployment) return;  // the filter changed meanwhile: its reload pages on
  const last = body.alerts[body.alerts.length - 1];
  if (!cursor || (state.page && state.page.cursor === cursor)) {
    state.page = { cursor: last ? [last.received_at, last.alert_id] : cursor, more: body.alerts.length === PAGE };
  }
  if (state.page) $("#load-older").hidden = !state.page.more;
}

async function reload() {
  state.page = null;
  await Promise.all([loadPage(null), loadDeployments().catch(() => {})]);
}

async function loadOlder() {
  const b = $("#load-older");
  if (!state.page || !state.page.more) return;
  b.disabled = true;
  try { await loadPage(state.page.cursor); } finally { b.disabled = false; }
}

function connect() {
  const es = new EventSource("/api/events");
  state.es = es;
  es.addEventListener("open", () => { setHub(true); reload().catch(() => {}); });
  es.addEventListener("alert", (e) => upsert(JSON.parse(e.data), true));
  es.addEventListener("decision", (e) => upsert(JSON.parse(e.data), true));
  es.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    state.nodes = s.nodes;
    state.serverSkew = s.server_time - Date.now() / 1000;
    if (!state.hubOk) setHub(true);
    renderDeployments();
    renderBanners();
  });
  es.addEventListener("purged", () => {
    // Retention removed old alerts: rebuild from the server's list.
    for (const { el } of state.cards.values()) el.remove();
    state.cards.clear();
    for (const g of state.groups.values()) g.remove();
    state.groups.clear();
    reload().catch(() => {});
  });
  es.addEventListener("signed_out", () => { location.href = "/login"; });
  es.addEventListener("error", () => {
    setHub(false);
    if (es.readyState === EventSource.CLOSED) {
      // Closed for good (e.g. 401 or hub restart): check the session, then reconnect.
      setTimeout(async () => {
        try { await api("/api/me"); connect(); } catch (_) { setTimeout(connect, 2000); }
      }, 1000);
    }
  });
}

async function main() {
  setupZoom();
  if (window.edgeNotify) window.edgeNotify.setupNotify();
  $("#camera-filter").addEventListener("change", () => { renderOpen(); refresh(); });
  $("#deployment-filter").addEventListener("change", (e) => pickDeployment(e.target.value));
  $("#load-older").addEventListener("click", () => { loadOlder().catch(() => {}); });
  try {
    const r = await api("/api/me");
    const me = await r.json();
    $("#officer").textContent = me.officer;
    state.officer = me.officer;
    state.outcomes = me.outcomes || [];
    state.lostAfter = me.node_lost_after_s;
    if (me.server_time) state.serverSkew = me.server_time - Date.now() / 1000;
  } catch (_) { return; }
  setHub(false);
  connect();
  setInterval(refresh, 1000);
  setInterval(() => { if (state.hubOk) loadDeployments().catch(() => {}); }, 5000);
}

document.addEventListener("DOMContentLoaded", main);
