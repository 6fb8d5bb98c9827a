// The cidfs dashboard: polls /ui/state once a second and draws it. No dependencies.
"use strict";

const HISTORY = 300; // seconds of transfer rates kept for the graph
const rates = []; // {t, inBps, outBps}
let last = null; // previous totals, for rates
let started = null; // when the page first heard the daemon (seconds), for the graphs' time axis
const peerRates = new Map(); // peer id -> [{t, bps}] received from it
const peerLast = new Map(); // peer id -> {t, bytes, blocks}
const COLORS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"];

const $ = (id) => document.getElementById(id);

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function short(id) {
  return id && id.length > 20 ? id.slice(0, 10) + "…" + id.slice(-6) : id || "";
}

// A row of cells; each cell is text (never HTML: every string here came from outside), or
// buttons that act (see `actions`).
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    const { text, cls, title, buttons } = typeof c === "object" && c !== null ? c : { text: c };
    td.textContent = text === undefined || text === null ? "" : String(text);
    for (const b of buttons || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "row-action";
      button.textContent = b.label;
      button.dataset.action = b.action;
      button.dataset.arg = b.arg;
      td.appendChild(button);
    }
    if (cls) td.className = cls;
    if (title) td.title = title;
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows, cols, empty) {
  const body = $(tbody);
  body.replaceChildren();
  if (rows.length === 0) {
    body.appendChild(row([{ text: empty, cls: "empty" }])).firstChild.colSpan = cols;
    return;
  }
  for (const r of rows) body.appendChild(row(r));
}

function facts(dl, pairs) {
  const el = $(dl);
  el.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    el.append(dt, dd);
  }
}

// The nodes holding part of an image: each with the share of the image's bytes it has pinned.
function partly(i) {
  const p = Object.entries(i.PartialHolders || {});
  const pct = (b) => (i.Size ? ` ${Math.floor((100 * b) / i.Size)} %` : "");
  return {
    text: p.map(([id, b]) => short(id) + pct(b)).join(", "),
    title: p.map(([id, b]) => `${id}: ${bytes(b)} of its blobs pinned`).join("\n"),
    cls: "partial-holders",
  };
}

// What the swarm's [[preload]] rules ask for an image.
function policy(p) {
  if (!p) return "";
  const parts = [];
  if (p.Replicas) parts.push(`${p.Replicas} ${p.Replicas === 1 ? "copy" : "copies"}`);
  if ((p.Every || []).length) parts.push(`every rule holder (${p.Every.length})`);
  return { text: parts.join(", ") || "none", title: (p.Every || []).join("\n"), cls: "policy" };
}

function render(s) {
  const node = s.Node || {};
  $("version").textContent = "v" + s.Version;
  $("node-id").textContent = node.ID || "";
  $("node-addrs").textContent = (node.Addresses || []).join("\n");

  const peers = s.Peers || [];
  $("peer-count").textContent = `(${peers.length} connected)`;
  fill("peers", peers.map((p) => {
    const b = p.Bitswap || {};
    return [
      { text: short(p.Peer), cls: "mono peer", title: p.Peer },
      { text: p.Addr, cls: "mono" },
      { text: p.Found, cls: "found" },
      p.Latency,
      p.Agent,
      { text: bytes(b.BytesReceived || 0), cls: "num" },
      { text: bytes(b.BytesSent || 0), cls: "num" },
      { text: b.DuplicateBlocks || 0, cls: "num" },
      { text: b.RejectedBlocks || 0, cls: "num rejected" },
    ];
  }), 9, "no peers connected");
  // the full peer ids, for search and copy
  for (const td of document.querySelectorAll("td.peer")) td.dataset.peer = td.title;

  const images = s.Images || [];
  $("image-count").textContent = `(${images.length})`;
  fill("image-rows", images.map((i) => [
    i.Name,
    { text: short(i.Cid), cls: "mono cid", title: i.Cid },
    { text: i.Size ? bytes(i.Size) : "?", cls: "num size", title: i.Size ? `${i.Size} bytes` : "" },
    { text: i.Facts ? i.Facts.Layers : "", cls: "num", title: i.Facts ? i.Facts.Platforms.join(", ") : "" },
    { text: i.Facts ? (i.Facts.Estargz ? "yes" : "no") : "", cls: "estargz" },
    { text: i.Pinned ? "yes" : "no", cls: "pinned" },
    { text: (i.Holders || []).map(short).join(", "), title: (i.Holders || []).join("\n"), cls: "holders" },
    partly(i),
    policy(i.Policy),
    { text: short(i.PushedBy), title: i.PushedBy },
    { buttons: [{ label: "Pin", action: "pin", arg: i.Cid }, { label: "Unpin", action: "unpin", arg: i.Cid }] },
  ]), 11, "no named images (cidfs image push … --name, or a push to the registry endpoint)");

  const mounts = s.Mounts || [];
  $("mount-count").textContent = `(${mounts.length})`;
  const ms = (v) => (v === null || v === undefined ? "–" : `<${v} ms`);
  fill("mount-rows", mounts.map((m) => {
    const st = m.Stats || {};
    return [
      { text: m.Mountpoint, cls: "mono" },
      { text: short(m.Image), cls: "mono", title: m.Image },
      m.Platform,
      { text: m.Layers, cls: "num" },
      { text: m.Inodes, cls: "num" },
      { text: st.Reads, cls: "num mount-reads" },
      { text: bytes(st.BytesRead), cls: "num mount-read" },
      { text: bytes(st.BytesFetched), cls: "num mount-fetched" },
      { text: `${st.CacheHits} / ${st.CacheMisses}`, cls: "num" },
      { text: `${ms(st.ReadP50Ms)} / ${ms(st.ReadP99Ms)}`, cls: "num" },
      { text: st.Errors, cls: "num" },
      { buttons: [{ label: "Unmount", action: "umount", arg: m.Mountpoint }] },
    ];
  }), 12, "no mounts");
  const kinds = (s.Mount && s.Mount.ByKind) || {};
  fill("fuse-rows", Object.entries(kinds).map(([k, v]) => [
    k,
    { text: v.Reads, cls: "num fuse-reads" },
    { text: bytes(v.Bytes), cls: "num fuse-bytes" },
    { text: v.Errors, cls: "num" },
  ]), 4, "");
  if (s.Mount) {
    $("cache").textContent = `chunk cache: ${s.Mount.CacheHits} hits, ${s.Mount.CacheMisses} misses (fetched)`;
  }

  const st = s.Store || {};
  facts("store-facts", [
    ["Blocks", String(st.NumObjects)],
    ["Block bytes", bytes(st.BlockBytes)],
    ["On disk", bytes(st.RepoSize)],
    ["Fetched from peers", `${bytes(st.BytesFetched)} (${st.BlocksFetched} blocks)`],
    ["Sent to peers", `${bytes(st.BytesSent)} (${st.BlocksSent} blocks)`],
    ["Duplicate blocks", String(st.DuplicateBlocks)],
    ["Rejected blocks", String(st.RejectedBlocks)],
    ["GC target", st.GcTarget ? bytes(st.GcTarget) : "none (store.gc_target_mb)"],
    ["Last verify", st.LastVerify
      ? `${new Date(st.LastVerify.At * 1000).toLocaleString()}: ${st.LastVerify.Checked} blocks, ${st.LastVerify.Corrupt} corrupt`
      : "not since the daemon started (cidfs repo verify)"],
    ["Repo", st.RepoPath || ""],
  ]);

  const now = Date.now() / 1000;
  started ??= now;
  if (last) {
    const dt = Math.max(now - last.t, 0.001);
    rates.push({
      t: now,
      inBps: Math.max(0, (st.BytesFetched - last.in) / dt),
      outBps: Math.max(0, (st.BytesSent - last.out) / dt),
    });
    while (rates.length && rates[0].t < now - HISTORY) rates.shift();
  }
  last = { t: now, in: st.BytesFetched, out: st.BytesSent };
  const r = rates[rates.length - 1];
  $("rate-now").textContent = r ? `now: ${bytes(r.inBps)}/s in, ${bytes(r.outBps)}/s out` : "";
  // the transfer view: what each peer sends this node, so a fan-out's sharing shows
  for (const p of peers) {
    const b = p.Bitswap || {};
    const got = b.BytesReceived || 0;
    const before = peerLast.get(p.Peer);
    if (before) {
      const list = peerRates.get(p.Peer) || [];
      list.push({ t: now, bps: Math.max(0, (got - before.bytes) / Math.max(now - before.t, 0.001)) });
      while (list.length && list[0].t < now - HISTORY) list.shift();
      peerRates.set(p.Peer, list);
    }
    peerLast.set(p.Peer, { t: now, bytes: got, blocks: b.BlocksReceived || 0 });
  }
  for (const id of [...peerRates.keys()]) {
    const list = peerRates.get(id);
    if (!list.length || list[list.length - 1].t < now - HISTORY) peerRates.delete(id);
  }
  draw();
  drawPeers(now);
}

function drawPeers(now) {
  const series = [...peerRates.entries()].filter(([, l]) => l.length > 1);
  const legend = $("per-peer-legend");
  legend.replaceChildren("received from each peer: ");
  plot("per-peer", now, series.map(([id, list], i) => {
    const color = COLORS[i % COLORS.length];
    const span = document.createElement("span");
    span.style.color = color;
    const blocks = (peerLast.get(id) || {}).blocks || 0;
    span.textContent = `■ ${short(id)} (${blocks} blocks) `;
    legend.appendChild(span);
    return { color, points: list.map((r) => ({ t: r.t, v: r.bps })) };
  }));
}

function draw() {
  if (rates.length < 2) return;
  const now = rates[rates.length - 1].t;
  plot("rates", now, [["inBps", "#2e7d32"], ["outBps", "#1565c0"]].map(([key, color]) => ({
    color,
    points: rates.map((r) => ({ t: r.t, v: r[key] })),
  })));
}

// Lines of bytes per second on a canvas, newest at the right edge. The time axis spans what the
// page has seen, at least 20 s and at most HISTORY, so a transfer watched from its start fills
// the graph instead of its last few pixels.
function plot(canvas, now, series) {
  const c = $(canvas);
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!series.length) return;
  const span = Math.min(HISTORY, Math.max(20, now - (started ?? now)));
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.v)));
  const x = (t) => c.width - ((now - t) / span) * c.width;
  const y = (v) => c.height - 4 - (v / max) * (c.height - 16);
  for (const { color, points } of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
    ctx.stroke();
  }
  ctx.fillStyle = "#667085";
  ctx.font = "11px sans-serif";
  ctx.fillText(`${bytes(max)}/s`, 4, 12);
  const label = `last ${Math.round(span)} s`;
  ctx.fillText(label, c.width - ctx.measureText(label).width - 4, 12);
}

async function poll() {
  try {
    const res = await fetch("/ui/state", { cache: "no-store", credentials: "same-origin" });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    render(await res.json());
    $("status").textContent = "live";
    $("status").className = "status";
    document.body.dataset.loaded = "1";
  } catch (e) {
    $("status").textContent = "cannot reach the daemon: " + e.message;
    $("status").className = "status bad";
  }
}

// ---- actions: the API's own commands, with the API token the user pasted (kept for this tab
// only). The API admits this page's requests only with that token.

const ACTIONS = {
  pin: { path: "image/pin", label: "pin" },
  unpin: { path: "image/unpin", label: "unpin" },
  umount: { path: "umount", label: "unmount" },
};

function say(text, bad) {
  $("msg").textContent = text;
  $("msg").className = bad ? "bad" : "";
}

async function act(label, path, args) {
  say(`${label}…`, false);
  const query = args.map((a) => "arg=" + encodeURIComponent(a)).join("&");
  const token = sessionStorage.getItem("cidfs-token") || "";
  try {
    const res = await fetch(`/api/v0/${path}?${query}`, {
      method: "POST",
      cache: "no-store",
      headers: token ? { Authorization: "Bearer " + token } : {},
    });
    const text = await res.text();
    if (res.ok) {
      say(`${label}: done`, false);
    } else {
      let why = text;
      try { why = JSON.parse(text).Message || text; } catch (_) { /* not JSON */ }
      say(`${label}: ${res.status} ${why}${token ? "" : " (paste the API token above)"}`, true);
    }
  } catch (e) {
    say(`${label}: ${e.message}`, true);
  }
  poll();
}

function wire() {
  const t = $("token");
  t.value = sessionStorage.getItem("cidfs-token") || "";
  t.addEventListener("input", () => sessionStorage.setItem("cidfs-token", t.value.trim()));
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button.row-action");
    if (!b || !ACTIONS[b.dataset.action]) return;
    const a = ACTIONS[b.dataset.action];
    act(a.label, a.path, [b.dataset.arg]);
  });
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("connect", "swarm/connect", [$("connect-addr").value.trim()]);
  });
  $("mount-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("mount", "mount", [$("mount-image").value.trim(), $("mount-dir").value.trim()]);
  });
  $("gc").addEventListener("click", () => act("gc", "repo/gc", []));
}

wire();
poll();
setInterval(poll, 1000);
