// The live seat map: one EventSource on /v1/events/{id}/stream; a `snapshot` builds
// the grid, each `delta` recolours the seats that changed and updates the counters.
// The grid's own counts are kept on <body data-available/pending/held/booked> so that a
// test (or a curious operator) can compare them with the server's counters.
"use strict";
(() => {
  const STATUS = { a: "available", p: "pending", h: "held", b: "booked" };
  const eventId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const $ = (id) => document.getElementById(id);
  const map = $("map");
  let cells = [];
  let status = [];
  const counts = { available: 0, pending: 0, held: 0, booked: 0 };

  function setConnection(state, text) {
    const el = $("connection");
    el.dataset.state = state;
    el.textContent = text;
  }

  function showMessage(text) {
    const el = $("message");
    el.textContent = text;
    el.hidden = !text;
  }

  function publishCounts() {
    for (const [k, v] of Object.entries(counts)) document.body.dataset[k] = String(v);
  }

  // Seat ids like "A1", "AB12" are laid out in rows by their letters, when that makes
  // a theatre (several rows, none too long); anything else is one wrapped grid in
  // best-available order.
  const MAX_ROW = 160;
  function rowsOf(seats) {
    const rows = new Map();
    for (let i = 0; i < seats.length; i++) {
      const m = /^([A-Za-z]+)-?(\d+)$/.exec(seats[i]);
      if (!m) return null;
      if (!rows.has(m[1])) rows.set(m[1], []);
      rows.get(m[1]).push(i);
    }
    const longest = Math.max(0, ...[...rows.values()].map((r) => r.length));
    return rows.size >= 2 && rows.size <= 500 && longest <= MAX_ROW ? rows : null;
  }

  function cellSize(perRow) {
    const width = Math.max(320, map.clientWidth || window.innerWidth - 48) - 36;
    return Math.max(4, Math.min(18, Math.floor(width / perRow) - 2));
  }

  function build(snapshot) {
    const seats = snapshot.seats;
    cells = new Array(seats.length);
    status = Array.from(snapshot.status);
    counts.available = counts.pending = counts.held = counts.booked = 0;
    const make = (i) => {
      const el = document.createElement("i");
      el.className = "seat " + STATUS[status[i]];
      el.title = seats[i];
      el.dataset.seat = seats[i];
      counts[STATUS[status[i]]]++;
      cells[i] = el;
      return el;
    };
    const fragment = document.createDocumentFragment();
    const rows = rowsOf(seats);
    if (rows) {
      map.className = "map";
      const longest = Math.max(...[...rows.values()].map((r) => r.length));
      document.documentElement.style.setProperty("--cell", cellSize(longest) + "px");
      for (const [name, indices] of rows) {
        const row = document.createElement("div");
        row.className = "row";
        const label = document.createElement("span");
        label.className = "name";
        label.textContent = name;
        row.appendChild(label);
        for (const i of indices) row.appendChild(make(i));
        fragment.appendChild(row);
      }
    } else {
      map.className = "map flat";
      const perRow = Math.ceil(Math.sqrt(seats.length * 2));
      document.documentElement.style.setProperty("--cell", cellSize(perRow) + "px");
      for (let i = 0; i < seats.length; i++) fragment.appendChild(make(i));
    }
    map.replaceChildren(fragment);
    $("title").textContent = snapshot.name ? `${snapshot.name} (${snapshot.event_id})` : snapshot.event_id;
    document.title = `seatgate · ${snapshot.event_id}`;
    publishCounts();
  }

  function apply(changes) {
    for (const [i, c] of changes) {
      const el = cells[i];
      if (!el || status[i] === c) continue;
      counts[STATUS[status[i]]]--;
      counts[STATUS[c]]++;
      status[i] = c;
      el.className = "seat " + STATUS[c];
    }
    publishCounts();
  }

  const number = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));

  function showCounters(c) {
    for (const k of ["available", "pending", "held", "booked", "claims_total", "outbox_length", "seats_total"]) {
      $(k).textContent = number(c[k]);
    }
    $("claims_per_sec").textContent = c.claims_per_sec === null ? "–" : number(Math.round(c.claims_per_sec));
    const lag = c.reconciler_lag_ms;
    $("reconciler_lag").textContent = lag >= 1000 ? (lag / 1000).toFixed(1) + " s" : lag + " ms";
  }

  if (!/^[A-Za-z0-9_-]{1,64}$/.test(eventId)) {
    showMessage("This page shows one event: /live/<event id>.");
    setConnection("closed", "no event");
    return;
  }

  // EventSource reconnects by itself after a dropped connection; after a refusal (the
  // event is not on sale yet, or the gateway restarted) it gives up, so we retry.
  const RETRY_MS = 2000;
  function connect() {
    const source = new EventSource(`/v1/events/${encodeURIComponent(eventId)}/stream`);
    source.addEventListener("snapshot", (e) => {
      const snapshot = JSON.parse(e.data);
      build(snapshot);
      showCounters(snapshot.counters);
      showMessage("");
    });
    source.addEventListener("delta", (e) => {
      const delta = JSON.parse(e.data);
      apply(delta.changes);
      showCounters(delta.counters);
    });
    source.addEventListener("gone", () => {
      source.close();
      setConnection("closed", "ended");
      showMessage("This event is no longer on sale.");
    });
    source.onopen = () => setConnection("live", "live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setConnection("reconnecting", "waiting");
        fetch(`/v1/events/${encodeURIComponent(eventId)}`).then((r) => {
          showMessage(r.status === 404
            ? `No event "${eventId}" is on sale yet (unknown, or not warmed); waiting for it…`
            : "The stream closed; reconnecting…");
        }, () => showMessage("The gateway does not answer; retrying…"));
        setTimeout(connect, RETRY_MS);
      } else {
        setConnection("reconnecting", "reconnecting…");
      }
    };
  }
  connect();
})();
