// reachprobe dashboard: draws what the collector's JSON API says (docs/data-format.md).
// Every text from the data goes in through textContent, never as HTML.
"use strict";

const API = "/api/dashboard/v1";
const STATES = ["accessible", "blocked", "intermittent", "down", "offline", "inconclusive"];
const css = getComputedStyle(document.documentElement);
const COLOURS = Object.fromEntries(STATES.map((s) => [s, css.getPropertyValue("--" + s).trim()]));
const state = {
  platform: new URLSearchParams(location.search).get("platform") || "",
  chart: null,
  seriesAsked: 0, // the newest time-view request: an older answer arriving later is dropped
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    let reason = response.statusText;
    try { reason = (await response.json()).error || reason; } catch (_) { /* not JSON */ }
    throw new Error(reason + " (HTTP " + response.status + ")");
  }
  return response.json();
}

function age(seconds) {
  if (seconds < 90) return seconds + " s ago";
  if (seconds < 90 * 60) return Math.round(seconds / 60) + " min ago";
  if (seconds < 36 * 3600) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function where(v) {
  return [v.network, v.asn ? "AS" + v.asn : null, v.country].filter(Boolean).join(", ");
}

// A vantage registered with a name only has no network, ASN or country to show.
function named(v) {
  const place = where(v);
  return place ? v.name + " (" + place + ")" : v.name;
}

function platformQuery(extra) {
  const params = new URLSearchParams(extra || {});
  if (state.platform) params.set("platform", state.platform);
  const text = params.toString();
  return text ? "?" + text : "";
}

// ------------------------------------------------------------------ now

function verdictCell(item) {
  const link = el("a", {
    class: "verdict " + item.verdict,
    href: "#measurement/" + item.measurement,
    title: "why: open this measurement's evidence",
    "data-measurement": item.measurement,
  }, item.verdict);
  const how = [item.blocking.join(", "), item.trigger ? "keyed on " + item.trigger : ""]
    .filter(Boolean).join("; ");
  return el("td", { class: "verdict-cell" }, link, how ? el("span", { class: "how" }, how) : null);
}

function vantageCard(v, endpoints) {
  const byDomain = new Map(v.latest.map((x) => [x.domain, x]));
  const rows = endpoints.filter((d) => byDomain.has(d)).map((d) => {
    const item = byDomain.get(d);
    return el("tr", { "data-domain": d },
      el("td", { class: "domain" }, d),
      verdictCell(item),
      el("td", { class: "age", title: item.started_at }, age(item.age_s)));
  });
  return el("article", { class: "card", "data-vantage": v.name },
    el("h3", {}, v.name),
    el("div", { class: "where" }, [where(v), "last seen " + age(v.age_s)].filter(Boolean).join(" · ")),
    el("table", {}, el("tbody", {}, ...rows)));
}

async function loadLatest() {
  const data = await getJSON(API + "/latest" + platformQuery());
  state.platform = data.platform;
  document.getElementById("platform-title").textContent = "· " + data.platform_title;
  document.getElementById("generated").textContent = "as of " + data.generated_at + " (UTC)";
  const box = document.getElementById("vantages");
  box.replaceChildren(...data.vantages.map((v) => vantageCard(v, data.endpoints)));
  document.getElementById("status").textContent = data.vantages.length
    ? data.vantages.length + (data.vantages.length === 1 ? " vantage" : " vantages")
    : "No measurements uploaded yet.";
  const select = document.getElementById("vantage-select");
  const chosen = select.value;
  select.replaceChildren(...data.vantages.map((v) => el("option", { value: v.name }, v.name)));
  if (chosen && data.vantages.some((v) => v.name === chosen)) select.value = chosen;
  return data;
}

// ------------------------------------------------------------- time view

function bucketState(counts) {
  if (counts.blocked && counts.accessible) return "intermittent";
  let best = "inconclusive";
  let most = -1;
  for (const s of ["blocked", "accessible", "down", "offline", "inconclusive"]) {
    if ((counts[s] || 0) > most) { best = s; most = counts[s] || 0; }
  }
  return best;
}

function countsText(counts) {
  return Object.entries(counts).map(([s, n]) => n + " " + s).join(", ");
}

function eventAnnotations(events) {
  const out = {};
  events.forEach((e, i) => {
    out["event" + i] = {
      type: "line",
      xMin: Date.parse(e.at),
      xMax: Date.parse(e.at),
      borderColor: "#0550ae",
      borderWidth: 2,
      borderDash: [6, 4],
      label: {
        display: true,
        content: e.kind + ": " + e.title.slice(0, 40),
        position: "start",
        font: { size: 10 },
        backgroundColor: "rgba(5, 80, 174, 0.85)",
      },
    };
  });
  return out;
}

// Chart.js's linear scale knows nothing of time: left to itself it puts ticks at
// round numbers of milliseconds, and labelled as times those repeat or mislead.
// So ticks are placed here, on whole UTC hours or days, at most MAX_TICKS of them.
const HOUR_MS = 3600000;
const DAY_MS = 24 * HOUR_MS;
const TICK_STEPS = [1, 2, 3, 6, 12].map((h) => h * HOUR_MS)
  .concat([1, 2, 3, 7, 14, 30, 91].map((d) => d * DAY_MS));
const MAX_TICKS = 10;

function tickStep(span) {
  return TICK_STEPS.find((step) => span / step <= MAX_TICKS) || TICK_STEPS[TICK_STEPS.length - 1];
}

function wholeTicks(since, until, step) {
  const ticks = [];
  for (let at = Math.ceil(since / step) * step; at <= until; at += step) ticks.push({ value: at });
  return ticks;
}

// A day tick (or an hour tick at midnight) says its date, MM-DD; any other its hour, HH:MM.
function tickLabel(value, step) {
  const iso = new Date(value).toISOString();
  return step >= DAY_MS || value % DAY_MS === 0 ? iso.slice(5, 10) : iso.slice(11, 16);
}

function drawTimeline(data) {
  const bucketMs = data.bucket_s * 1000;
  const domains = data.endpoints.map((e) => e.domain);
  const points = [];
  for (const endpoint of data.endpoints) {
    for (const b of endpoint.buckets) {
      const start = Date.parse(b.start);
      points.push({ x: [start, start + bucketMs], y: endpoint.domain, counts: b.counts,
                    state: bucketState(b.counts) });
    }
  }
  const since = Date.parse(data.since);
  const until = Date.parse(data.until);
  const step = tickStep(until - since);
  const config = {
    type: "bar",
    data: {
      labels: domains,
      datasets: [{
        data: points,
        backgroundColor: (ctx) => (ctx.raw ? COLOURS[ctx.raw.state] : COLOURS.inconclusive),
        borderWidth: 0,
        borderSkipped: false,
        grouped: false,
        barPercentage: 0.9,
        categoryPercentage: 0.9,
      }],
    },
    options: {
      indexAxis: "y",
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: {
          type: "linear",
          min: since,
          max: until,
          afterBuildTicks: (axis) => { axis.ticks = wholeTicks(since, until, step); },
          ticks: { callback: (value) => tickLabel(value, step) },
          title: { display: true, text: "UTC" },
        },
        y: { type: "category", labels: domains },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => new Date(items[0].raw.x[0]).toISOString().slice(0, 16) + " UTC",
            label: (item) => item.raw.y + ": " + item.raw.state + " (" + countsText(item.raw.counts) + ")",
          },
        },
        annotation: { annotations: eventAnnotations(data.events) },
      },
    },
  };
  if (state.chart) state.chart.destroy();
  state.chart = new Chart(document.getElementById("timeline"), config);
}

async function loadSeries() {
  const vantage = document.getElementById("vantage-select").value;
  const summary = document.getElementById("time-summary");
  if (!vantage) { summary.textContent = "No vantage yet."; return; }
  const period = document.getElementById("period-select").value;
  const asked = ++state.seriesAsked;
  const data = await getJSON(API + "/series" + platformQuery({ vantage, period }));
  if (asked !== state.seriesAsked) return; // the choice changed while this was on its way
  const intermittent = data.endpoints.filter((e) => e.buckets.some((b) => bucketState(b.counts) === "intermittent"));
  summary.textContent = named(data.vantage) + ", " + data.since + " to " +
    data.until + ", buckets of " + Math.round(data.bucket_s / 60) + " min" +
    (intermittent.length ? "; intermittent: " + intermittent.map((e) => e.domain).join(", ") : "");
  drawTimeline(data);
  document.getElementById("events").replaceChildren(...data.events.map((e) =>
    el("li", {}, e.date + " ", el("span", { class: "kind" }, e.kind), ": " + e.title +
       " (" + e.source + ", certainty " + e.certainty + ")")));
  document.getElementById("timeline").setAttribute("data-rendered", String(data.endpoints.length));
}

// -------------------------------------------------------------- evidence

async function openEvidence(id) {
  const dialog = document.getElementById("evidence");
  const data = await getJSON(API + "/measurements/" + encodeURIComponent(id));
  document.getElementById("evidence-title").textContent = data.domain + " from " + data.vantage.name;
  const how = [data.blocking.join(", "), data.trigger ? "censor keyed on " + data.trigger : ""]
    .filter(Boolean).join("; ");
  document.getElementById("evidence-summary").textContent =
    data.verdict.toUpperCase() + (how ? " · " + how : "") + " · " + data.started_at;
  document.getElementById("evidence-lines").textContent = data.evidence.join("\n");
  if (!dialog.open) dialog.showModal();
}

function route() {
  const match = location.hash.match(/^#measurement\/([0-9a-f-]{36})$/);
  if (match) openEvidence(match[1]).catch(showError);
}

function showError(error) {
  document.getElementById("status").textContent = "Could not load: " + error.message;
}

async function start() {
  document.getElementById("evidence").addEventListener("close", () => {
    if (location.hash.startsWith("#measurement/")) history.replaceState(null, "", location.pathname + location.search);
  });
  window.addEventListener("hashchange", route);
  document.getElementById("vantage-select").addEventListener("change", () => loadSeries().catch(showError));
  document.getElementById("period-select").addEventListener("change", () => loadSeries().catch(showError));
  try {
    await loadLatest();
    await loadSeries();
  } catch (error) {
    showError(error);
  }
  route();
  document.body.setAttribute("data-ready", "1");
  setInterval(() => loadLatest().catch(showError), 60000);
}

document.addEventListener("DOMContentLoaded", start);
