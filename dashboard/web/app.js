// eddy dashboard. No framework, no build step. Readings are applied to
// the model as they arrive; animation frames draw, a few tiles in view at
// a time, writing the DOM only where it changed.
'use strict';
(function () {
  const $ = (s) => document.querySelector(s);
  const SPARK_N = 120;          // points kept per sparkline
  const SPARK_WINDOW = 300;     // seconds of history backfilled into sparklines
  const narrow = matchMedia('(max-width: 600px)').matches;
  // Per-topic event rate asked of the server (rateFor): what a person can
  // read, and what the screen can draw. Tests may set ?rate= on the page.
  const params = new URLSearchParams(location.search);
  let RATE = 0;
  const FAV_KEY = 'eddy.favourites';

  const series = new Map();   // topic -> S
  let arrived = false;        // readings applied since the last schedule()
  let frameQueued = false;
  let paused = false;
  let lastSeq = 0;            // highest seq applied: the resume point
  let skipped = 0, lastGap = 0;
  let connState = 'connecting';
  let filterFn = () => true;
  let favs = new Set(loadFavs());
  const tilesEl = $('#tiles');
  const tpl = $('#tile-tpl');

  function loadFavs() {
    try { return JSON.parse(localStorage.getItem(FAV_KEY)) || []; } catch (e) { return []; }
  }
  function saveFavs() {
    try { localStorage.setItem(FAV_KEY, JSON.stringify([...favs])); } catch (e) { /* private mode */ }
  }

  // ---- values ----------------------------------------------------------
  function fmtNum(v) {
    const a = Math.abs(v);
    if (a >= 1e6) { // 312.5 M, not 3.125e+8
      const e = Math.min(Math.floor(Math.log10(a) / 3), 4);
      return String(Number((v / 10 ** (3 * e)).toPrecision(4))) + ' ' + ' kMGT'[e];
    }
    if (Number.isInteger(v)) return String(v);
    if (a > 0 && a < 1e-3) return v.toExponential(2);
    return String(Number(v.toPrecision(a >= 1000 ? 6 : 4)));
  }
  // describe turns a reading into what a tile shows and what it plots.
  function describe(r) {
    if ('value_b64' in r) {
      const n = Math.floor(r.value_b64.length * 3 / 4) - (r.value_b64.endsWith('==') ? 2 : r.value_b64.endsWith('=') ? 1 : 0);
      return { text: 'binary, ' + n + ' B', num: NaN, isText: true, title: r.value_b64.slice(0, 64) };
    }
    const v = r.value;
    if (typeof v === 'number') {
      if (r.unit === 'bytes' || r.unit === 'B') return { text: fmtBytes(v), num: v, isText: false, noUnit: true };
      return { text: fmtNum(v), num: v, isText: false };
    }
    if (typeof v === 'boolean') return { text: v ? 'true' : 'false', num: v ? 1 : 0, isText: true };
    if (typeof v === 'string') return { text: v.length > 80 ? v.slice(0, 80) + '…' : v, num: NaN, isText: true, title: v.slice(0, 500) };
    const s = JSON.stringify(v);
    return { text: s.length > 80 ? s.slice(0, 80) + '…' : s, num: NaN, isText: true, title: s.slice(0, 500) };
  }

  // ---- series and tiles ------------------------------------------------
  class S {
    constructor(topic) {
      this.topic = topic;
      this.seq = 0; this.ts = 0; this.unit = '';
      this.d = null;               // describe() of the latest value
      this.st = new Float64Array(SPARK_N); this.sv = new Float64Array(SPARK_N);
      this.n = 0; this.head = 0;   // ring of sparkline points
      this.interval = 0;           // smoothed seconds between readings
      this.dirty = true; this.sparkDirty = true;
      this.ageText = ''; this.stale = false; this.sparkAt = -1e9; this.sparkD = ''; this.ageRound = -1;
      this.el = null;
    }
    push(t, v) {
      if (!Number.isFinite(v)) return;
      this.st[this.head] = t; this.sv[this.head] = v;
      this.head = (this.head + 1) % SPARK_N; this.n = Math.min(this.n + 1, SPARK_N);
      this.sparkDirty = true;
    }
  }

  function getSeries(topic) {
    let s = series.get(topic);
    if (!s) {
      s = new S(topic);
      series.set(topic, s);
      makeTile(s);
      // Many more series than when the stream began: ask for a lower
      // rate (a new stream, resuming exactly where this one is).
      if (es && RATE > 0 && !params.has('rate') && rateFor(series.size) < RATE / 1.5 && !rerateTimer) {
        rerateTimer = setTimeout(() => { rerateTimer = 0; connect(); }, 2000);
      }
    }
    return s;
  }

  // Which tiles are drawn: those in the viewport, from the grid's
  // geometry (every tile has the same height), read at the start of a
  // frame when layout is clean. (An IntersectionObserver over 200 tiles
  // cost a share of every frame, and content-visibility's own event
  // counts tiles half a screen away as visible.)
  let shown = null; // the tiles the filter lets through, in grid order; null: recount
  function visibleTiles() {
    if (!shown) shown = Array.prototype.filter.call(tilesEl.children, (li) => !li.hidden).map((li) => li._s);
    if (!shown.length) return shown;
    const r = tilesEl.getBoundingClientRect();
    const first = shown[0].el.li;
    const gap = parseFloat(getComputedStyle(tilesEl).rowGap) || 0;
    const w = first.offsetWidth + gap, h = first.offsetHeight + gap;
    if (!w || !h) return [];
    const cols = Math.max(1, Math.round((r.width + gap) / w));
    const top = Math.max(0, Math.floor(-r.top / h)), bottom = Math.max(0, Math.ceil((innerHeight - r.top) / h));
    return shown.slice(top * cols, bottom * cols);
  }
  addEventListener('scroll', () => schedule(), { passive: true });
  addEventListener('resize', () => schedule());
  function makeTile(s) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li._s = s;
    s.el = {
      li, name: li.querySelector('.name'), fav: li.querySelector('.fav'), val: li.querySelector('.val'),
      num: li.querySelector('.num'), unit: li.querySelector('.unit'), age: li.querySelector('.age'),
      spark: li.querySelector('.spark path'),
    };
    // The last level, which tells tiles apart, first and large; the path
    // above it below, small. (The DOM keeps the topic's order, so the
    // button's text is the topic.)
    const cut = s.topic.lastIndexOf('/') + 1;
    const path = document.createElement('span'), leaf = document.createElement('span');
    path.className = 'path'; leaf.className = 'leaf';
    path.textContent = s.topic.slice(0, cut); leaf.textContent = s.topic.slice(cut);
    s.el.name.append(path, leaf);
    s.el.name.title = 'Chart ' + s.topic;
    s.el.name.setAttribute('aria-label', s.topic + ': chart');
    s.el.name.addEventListener('click', () => chartToggle(s.topic, true));
    s.el.fav.addEventListener('click', () => toggleFav(s.topic));
    setFav(s);
    li.hidden = !filterFn(s.topic);
    insertSorted(s);
    $('#empty').hidden = true;
    updateCount();
  }
  function setFav(s) {
    const on = favs.has(s.topic);
    s.el.fav.setAttribute('aria-pressed', String(on));
    s.el.fav.textContent = on ? '★' : '☆';
    s.el.fav.setAttribute('aria-label', (on ? 'Unpin ' : 'Pin ') + s.topic);
    s.el.li.classList.toggle('pinned', on);
  }
  function before(a, b) { // favourites first, then by topic
    const fa = favs.has(a), fb = favs.has(b);
    if (fa !== fb) return fa;
    return a < b;
  }
  function insertSorted(s) {
    // Tiles are sorted; find the first one that should follow s.
    let lo = 0, hi = tilesEl.children.length;
    const kids = tilesEl.children;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(kids[mid]._s.topic, s.topic)) lo = mid + 1; else hi = mid;
    }
    tilesEl.insertBefore(s.el.li, kids[lo] || null);
    shown = null;
  }
  function toggleFav(topic) {
    if (favs.has(topic)) favs.delete(topic); else favs.add(topic);
    saveFavs();
    const s = series.get(topic);
    setFav(s);
    const focused = document.activeElement;
    insertSorted(s);
    if (focused) focused.focus();
  }

  // ---- filter ----------------------------------------------------------
  function compileFilter(q) {
    q = q.trim();
    if (!q) return () => true;
    if (q.includes('+') || q.includes('#')) {
      const f = q.split('/');
      return (topic) => {
        const t = topic.split('/');
        for (let i = 0; i < f.length; i++) {
          if (f[i] === '#') return true;
          if (i >= t.length) return false;
          if (f[i] !== '+' && f[i] !== t[i]) return false;
        }
        return f.length === t.length;
      };
    }
    const lq = q.toLowerCase();
    return (topic) => topic.toLowerCase().includes(lq);
  }
  let filterTimer = 0;
  $('#filter').addEventListener('input', (e) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      filterFn = compileFilter(e.target.value);
      for (const s of series.values()) s.el.li.hidden = !filterFn(s.topic);
      shown = null;
      updateCount();
      schedule();
    }, 80);
  });
  function updateCount() {
    let shown = 0;
    for (const s of series.values()) if (!s.el.li.hidden) shown++;
    $('#count').textContent = shown === series.size ? series.size + ' series' : shown + ' of ' + series.size + ' series';
  }

  // ---- applying readings -----------------------------------------------
  // A reading is applied to the model (latest value, sparkline, chart
  // data) as it arrives, in the task that read it; frames only draw.
  function reading(data) {
    let r;
    try { r = JSON.parse(data); } catch (e) { return; }
    apply(r);
    arrived = true;
  }
  let applied = 0;
  function apply(r) {
    applied++;
    if (r.seq > lastSeq) lastSeq = r.seq;
    const s = getSeries(r.topic);
    if (r.seq <= s.seq) return; // a replay of what this tile already shows
    const t = Date.parse(r.ts) / 1000;
    if (s.ts && t > s.ts) {
      const dt = t - s.ts;
      s.interval = s.interval ? s.interval * 0.8 + dt * 0.2 : dt;
    }
    s.seq = r.seq; s.ts = t; s.unit = r.unit || '';
    s.d = describe(r);
    s.push(t, s.d.num);
    s.dirty = true;
    chartLive(r.topic, r.seq, t, s.d.num);
  }

  // Painting. The page draws in rounds, at most every PAINT_MS (250 ms,
  // quicker than anyone reads a value; up to 750 ms while the device
  // shows long tasks, creeping back once it keeps up). A round is spread
  // over as many animation frames as it needs: each frame redraws at
  // most TILES_PER_FRAME tiles (only the visible ones that changed), and
  // the chart gets a frame of its own. On a slow CPU one frame that drew
  // every changed tile and the chart took several frame times (a long
  // task, a visible stall); small frames keep the page at 60 frames a
  // second (BENCHMARKS.md).
  let PAINT_MS = 250;
  const TILES_PER_FRAME = 2;
  let lastLong = 0;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.duration > 50) { lastLong = performance.now(); PAINT_MS = Math.min(750, PAINT_MS * 1.5); }
    }).observe({ type: 'longtask' });
  } catch (e) { /* no long-task timing: keep 250 ms */ }
  setInterval(() => { if (performance.now() - lastLong > 5000) PAINT_MS = Math.max(250, PAINT_MS / 1.5); }, 5000);
  let lastPaint = 0;
  function schedule() {
    if (frameQueued) return;
    frameQueued = true;
    const wait = lastPaint + PAINT_MS - performance.now();
    if (wait > 4) setTimeout(() => requestAnimationFrame(frame), wait);
    else requestAnimationFrame(frame);
  }
  let frameMs = 0, frames = 0, streamMs = 0;
  function frame() {
    const t0 = performance.now();
    lastPaint = t0;
    frameInner(t0);
    frameMs += performance.now() - t0; frames++;
  }
  // Sparklines move at most once a second: a trend needs no more.
  const SPARK_MS = 1000;
  let rr = 0;       // where the next frame starts among the visible tiles
  let ageRound = 0; // advanced every second: ages are redrawn
  function frameInner(t0) {
    frameQueued = false;
    renderState();
    if (paused) return;
    let more = false, sparkLater = false;
    if (chartDue(t0)) {
      chartRender(t0);
      more = true; // the tiles in the next frame
    } else {
      const list = visibleTiles();
      const now = Date.now() / 1000;
      let n = 0;
      for (let k = 0; k < list.length; k++) {
        const s = list[(rr + k) % list.length];
        const spark = s.sparkDirty && t0 - s.sparkAt >= SPARK_MS;
        if (s.sparkDirty && !spark) sparkLater = true;
        if (!s.dirty && !spark && s.ageRound === ageRound) continue;
        if (n === TILES_PER_FRAME) { more = true; rr = (rr + k) % list.length; break; }
        let changed = s.dirty ? renderTile(s, now) : s.ageRound !== ageRound ? renderAge(s, now) : false;
        s.ageRound = ageRound;
        if (spark) { if (s.n >= 2) s.sparkAt = t0; changed = drawSpark(s) || changed; } // the first line at once
        if (changed) n++;
      }
      if (!more) rr = 0;
    }
    if (more) { frameQueued = true; requestAnimationFrame(frame); } else if ((sparkLater || chartDirty) && !laterTimer) laterTimer = setTimeout(() => { laterTimer = 0; schedule(); }, 300);
  }
  let laterTimer = 0;
  // renderTile, renderAge and drawSpark write the DOM only where it
  // changes, and say whether it did.
  function renderTile(s, now) {
    s.dirty = false;
    const d = s.d;
    if (!d) return false;
    let changed = false;
    if (s.el.num.textContent !== d.text) { s.el.num.textContent = d.text; changed = true; }
    const unit = d.noUnit ? '' : s.unit;
    if (s.el.unit.textContent !== unit) { s.el.unit.textContent = unit; changed = true; }
    if (d.isText !== s.el.val.classList.contains('text')) { s.el.val.classList.toggle('text', d.isText); changed = true; }
    const title = d.title || '';
    if (s.el.val.title !== title) s.el.val.title = title;
    return renderAge(s, now) || changed;
  }
  function fmtAge(sec) {
    if (sec < 1.5) return 'now';
    if (sec < 60) return Math.round(sec) + ' s ago';
    if (sec < 3600) return Math.round(sec / 60) + ' min ago';
    if (sec < 86400) return Math.round(sec / 3600) + ' h ago';
    return Math.round(sec / 86400) + ' d ago';
  }
  function renderAge(s, now) {
    if (!s.ts) return false;
    const age = Math.max(0, now - s.ts);
    // Stale: well past the series' own rhythm, and never under 10 s.
    const stale = age > Math.max(10, 3 * s.interval);
    const text = (stale ? 'stale, ' : '') + fmtAge(age);
    let changed = false;
    if (text !== s.ageText) { s.ageText = text; s.el.age.textContent = text; changed = true; }
    if (stale !== s.stale) { s.stale = stale; s.el.li.classList.toggle('stale', stale); changed = true; }
    return changed;
  }
  function readColors() {
    chartRebuild();
  }
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { readColors(); schedule(); });

  // A sparkline is an SVG path in a 1000x100 box stretched over the
  // tile (its stroke keeps its width): a new path is part of the tile's
  // own paint. (Canvases were composited layers of their own, and each
  // redrawn one cost a copy of its pixels on the main thread at every
  // commit: the largest cost of a frame in the profile, BENCHMARKS.md.)
  function drawSpark(s) {
    s.sparkDirty = false;
    let d = '';
    if (s.n >= 2) {
      const start = (s.head - s.n + SPARK_N) % SPARK_N;
      let lo = Infinity, hi = -Infinity;
      const t0 = s.st[start], t1 = s.st[(s.head - 1 + SPARK_N) % SPARK_N];
      for (let i = 0; i < s.n; i++) {
        const v = s.sv[(start + i) % SPARK_N];
        if (v < lo) lo = v; if (v > hi) hi = v;
      }
      if (hi === lo) { hi += 1; lo -= 1; }
      const span = Math.max(t1 - t0, 1e-3);
      const parts = new Array(s.n);
      for (let i = 0; i < s.n; i++) {
        const k = (start + i) % SPARK_N;
        const x = (s.st[k] - t0) / span * 990 + 5;
        const y = 95 - (s.sv[k] - lo) / (hi - lo) * 90;
        parts[i] = (i ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      }
      d = parts.join('');
    }
    if (s.sparkD === d) return false;
    s.sparkD = d; s.el.spark.setAttribute('d', d);
    return true;
  }

  // Ages and connection state tick once a second, in the next round.
  setInterval(() => { ageRound++; schedule(); }, 1000);

  // ---- connection ------------------------------------------------------
  function setState(st) { connState = st; renderState(); }
  function renderState() {
    const el = $('#state');
    let st = connState, text = connState;
    if (st === 'live' && Date.now() - lastGap < 10000) {
      st = 'downsampled';
      text = 'downsampled: ' + skipped.toLocaleString('en') + ' updates skipped';
    }
    if (st === 'reconnecting' || st === 'connecting') text = st + '…';
    if (paused) { st = 'paused'; text = 'paused'; }
    if (el.dataset.state !== st) el.dataset.state = st;
    if (el.textContent !== text) el.textContent = text;
  }
  // rateFor chooses the per-topic rate for n series: at most 4 updates a
  // second on a tile (2 on a phone), which is as fast as anyone reads a
  // number, and at most BUDGET records a second for the whole page, so
  // that reading and applying them stays a small share of a slow
  // device's main thread; never below one update in two seconds.
  function rateFor(n) {
    if (params.has('rate')) return Number(params.get('rate'));
    const budget = narrow ? 100 : 200;
    const r = Math.min(narrow ? 2 : 4, budget / Math.max(1, n));
    return Math.max(0.5, Math.round(r * 4) / 4);
  }
  function eventsURL() {
    RATE = rateFor(series.size);
    let u = '/events?mode=downsample';
    if (RATE > 0) u += '&rate=' + RATE;
    return u;
  }
  // The stream is an EventSource: the browser parses it, honours the
  // server's retry hint, and on a lost connection reconnects by itself
  // with Last-Event-ID, so the server resumes after the last reading
  // this page has (no gap, no duplicate). The first connection resumes
  // after what /api/series gave (lastEventID; the header wins on the
  // browser's reconnects). One DOM event per reading is affordable
  // because the rate is chosen for the screen (rateFor: at most 200
  // readings a second): with 200 series at 10 Hz, 4x CPU throttling, both
  // this and a fetch reader met the frame targets (60 s each: no long
  // task, p99 16.8 ms; BENCHMARKS.md). At 800 a second, before the rate
  // was chosen from the series count, the fetch reader had fewer long
  // tasks; the frames' own cost was the larger problem then.
  let es = null, retryTimer = 0, rerateTimer = 0;
  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    let url = eventsURL();
    const from = lastSeq;
    if (from > 0) url += '&lastEventID=' + from;
    const src = new EventSource(url);
    es = src;
    src.onopen = () => { setState('live'); detectProto(); pollStatus(); };
    src.addEventListener('reading', (e) => { streamTime(reading, e.data); });
    src.addEventListener('gap', (e) => {
      try { skipped += JSON.parse(e.data).dropped || 0; } catch (x) { /* ignore */ }
      lastGap = Date.now(); renderState();
    });
    src.onerror = () => {
      if (es !== src) return;
      setState('reconnecting');
      // CONNECTING: the browser retries by itself. CLOSED: the server
      // answered with an error status (401 when the session lapsed).
      if (src.readyState === EventSource.CLOSED) retryTimer = setTimeout(recheck, 1000 + Math.random() * 2000);
    };
  }
  async function recheck() {
    try {
      const r = await fetch('/api/status', { cache: 'no-store' });
      if (r.status === 401) { location.reload(); return; } // the login form
    } catch (e) { /* still down */ }
    connect();
  }
  function streamTime(fn, arg) {
    const t0 = performance.now();
    fn(arg);
    if (arrived) { arrived = false; schedule(); }
    streamMs += performance.now() - t0;
  }
  function detectProto() {
    // The stream's own entry appears only when it ends; requests to the
    // same origin share its connection, so the newest one tells.
    const ents = performance.getEntriesByType('resource').filter((e) => e.name.startsWith(location.origin) && e.nextHopProtocol);
    const nav = performance.getEntriesByType('navigation')[0];
    const p = ents.length ? ents[ents.length - 1].nextHopProtocol : (nav && nav.nextHopProtocol) || '';
    if (ents.length > 100) performance.clearResourceTimings(); // polling adds one every 5 s
    const label = p === 'http/1.1' ? 'h1' : p;
    const el = $('#proto');
    if (label && el.textContent !== label) el.textContent = label;
  }
  performance.setResourceTimingBufferSize(500);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(); });

  $('#pause').addEventListener('click', (e) => {
    paused = !paused;
    e.target.setAttribute('aria-pressed', String(paused));
    e.target.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) { for (const s of series.values()) { s.dirty = true; s.sparkDirty = true; } chartDirty = true; schedule(); }
    renderState();
  });

  // ---- device panel ----------------------------------------------------
  function fmtBytes(n) {
    const u = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }
  function fmtDur(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? d + ' d ' + h + ' h' : h ? h + ' h ' + m + ' min' : m ? m + ' min ' + (s % 60) + ' s' : s + ' s';
  }
  function renderStatus(st) {
    $('#host').textContent = st.hostname || '';
    const rows = [
      ['Host', st.hostname], ['Version', st.version || '–'], ['Uptime', fmtDur(st.uptime_seconds || 0)],
      ['Ingest', (st.ingest ? st.ingest.records_per_second : 0) + ' records/s'],
    ];
    if (st.streams) rows.push(['Streams', Object.entries(st.streams).map(([k, v]) => k + ' ' + v).join(', ')]);
    if (st.log) {
      const l = st.log;
      rows.push(['Ring log', fmtBytes(l.bytes) + ' in ' + l.records.toLocaleString('en') + ' records (file ' + fmtBytes(l.file_bytes) + ')']);
      rows.push(['Oldest record', l.oldest_time ? new Date(l.oldest_time).toLocaleString() + ' (#' + l.oldest_seq + ')' : '–']);
      if (l.error) rows.push(['Log error', l.error, 'bad']);
    }
    if (st.epoch) rows.push(['Epoch', st.epoch]);
    for (const m of st.mqtt || []) rows.push(['MQTT', m.broker + ': ' + (m.connected ? 'connected' : 'disconnected'), m.connected ? 'good' : 'bad']);
    for (const s of st.sensors || []) rows.push(['Sensor', s.name + ': ' + (s.up ? 'up' : 'error: ' + (s.last_error || 'unknown')), s.up ? 'good' : 'bad']);
    const up = st.upstream;
    if (up && typeof up === 'object' && 'connected' in up) {
      const lag = up.lag_records ? ', ' + up.lag_records.toLocaleString('en') + ' records behind (' + Math.round(up.lag_seconds || 0) + ' s)' : ', up to date';
      rows.push(['Upstream', (up.device ? up.device + ': ' : '') + (up.connected ? 'connected' : 'disconnected') + ', ' + (up.published || 0).toLocaleString('en') + ' published' + lag +
        (up.gap_records ? ', ' + up.gap_records.toLocaleString('en') + ' trimmed before sent' : ''), up.connected ? 'good' : 'bad']);
    } else if (up) rows.push(['Upstream', JSON.stringify(up)]);
    const dl = $('#status');
    const frag = document.createDocumentFragment();
    for (const [k, v, cls] of rows) {
      const dt = document.createElement('dt'); dt.textContent = k;
      const dd = document.createElement('dd'); dd.textContent = v == null ? '–' : String(v);
      if (cls) dd.className = cls;
      frag.append(dt, dd);
    }
    dl.replaceChildren(frag);
  }
  async function pollStatus() {
    try {
      const r = await fetch('/api/status', { cache: 'no-store' });
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) renderStatus(await r.json());
      detectProto();
    } catch (e) { /* offline: the state pill says so */ }
  }
  setInterval(pollStatus, 5000);

  // ---- chart -------------------------------------------------------------
  const chart = { topics: [], window: 300, data: new Map(), plot: null, lastDraw: 0 };
  let chartDirty = false;
  const palette = ['#0057d9', '#c2410c', '#15803d', '#9333ea', '#b91c1c', '#0e7490'];
  const paletteDark = ['#6cb0ff', '#ffa657', '#7ee787', '#d2a8ff', '#ff7b72', '#56d4dd'];
  function colors() { return matchMedia('(prefers-color-scheme: dark)').matches ? paletteDark : palette; }

  function chartToggle(topic, add) {
    const i = chart.topics.indexOf(topic);
    if (add && i < 0) {
      if (chart.topics.length >= 6) chart.topics.shift();
      chart.topics.push(topic);
    } else if (!add && i >= 0) {
      chart.topics.splice(i, 1);
    } else if (add) {
      $('#chart-panel').scrollIntoView({ block: 'nearest' });
      return;
    }
    chartLoad();
  }
  async function chartLoad() {
    const panel = $('#chart-panel');
    panel.hidden = chart.topics.length === 0;
    renderChips();
    if (!chart.topics.length) { chartDestroy(); return; }
    panel.scrollIntoView({ block: 'nearest' });
    const width = $('#chart').clientWidth || 600;
    const points = Math.max(50, Math.min(1000, Math.round(width)));
    const since = new Date(Date.now() - chart.window * 1000).toISOString();
    const q = chart.topics.map((t) => 'topic=' + encodeURIComponent(t)).join('&');
    const url = '/api/history?' + q + '&since=' + since + '&points=' + points;
    chart.loading = url;
    // Readings that arrive while the backfill loads are kept, and added
    // after it unless it already holds them.
    const pending = new Map(chart.topics.map((t) => [t, chart.data.get(t) || { t: [], v: [], lo: [], hi: [], seq: series.has(t) ? series.get(t).seq : 0 }]));
    chart.data = pending;
    let body;
    try {
      const r = await fetch(url, { cache: 'no-store' });
      if (r.status === 401) { location.reload(); return; }
      body = await r.json();
    } catch (e) { return; }
    if (chart.loading !== url) return; // a newer load started
    const data = new Map();
    for (const t of chart.topics) data.set(t, { t: [], v: [], lo: [], hi: [], seq: 0 });
    for (const sr of body) {
      const d = data.get(sr.topic);
      if (!d) continue;
      for (const b of sr.buckets) { d.t.push(Date.parse(b.ts) / 1000); d.v.push(b.last); d.lo.push(b.min); d.hi.push(b.max); }
    }
    for (const [t, d] of data) {
      const p = pending.get(t);
      const last = d.t.length ? d.t[d.t.length - 1] : -Infinity;
      for (let i = 0; i < p.t.length; i++) if (p.t[i] > last) { d.t.push(p.t[i]); d.v.push(p.v[i]); d.lo.push(p.lo[i]); d.hi.push(p.hi[i]); }
      d.seq = p.seq;
    }
    chart.data = data;
    chart.url = url;
    chartRebuild();
  }
  function chartLive(topic, seq, t, v) {
    const d = chart.data.get(topic);
    if (!d || !Number.isFinite(v) || seq <= d.seq) return;
    d.seq = seq;
    if (d.t.length && t <= d.t[d.t.length - 1]) return; // out of order: not drawable
    d.t.push(t); d.v.push(v); d.lo.push(v); d.hi.push(v);
    const cut = Date.now() / 1000 - chart.window;
    let k = 0; while (k < d.t.length - 2 && d.t[k] < cut) k++;
    if (k > 0 || d.t.length > 5000) { k = Math.max(k, d.t.length - 5000); d.t.splice(0, k); d.v.splice(0, k); d.lo.splice(0, k); d.hi.splice(0, k); }
    chartDirty = true;
  }
  // aligned joins the topics' points into uPlot's [x, y1, y2...] form.
  function aligned() {
    const ts = chart.topics.map((t) => chart.data.get(t) || { t: [], v: [], lo: [], hi: [] });
    // One series: its last values, and the band of each bucket's min and
    // max, so a decimated day still shows its spikes.
    if (ts.length === 1) return [ts[0].t.slice(), ts[0].v.slice(), ts[0].lo.slice(), ts[0].hi.slice()];
    const xs = [...new Set(ts.flatMap((d) => d.t))].sort((a, b) => a - b);
    const idx = new Map(xs.map((x, i) => [x, i]));
    const out = [xs];
    for (const d of ts) {
      const y = new Array(xs.length).fill(null);
      for (let i = 0; i < d.t.length; i++) y[idx.get(d.t[i])] = d.v[i];
      out.push(y);
    }
    return out;
  }
  function timeLabel(sec) {
    const o = { hour: '2-digit', minute: '2-digit', hour12: false };
    if (chart.window <= 300 && !narrow) o.second = '2-digit';
    const d = new Date(sec * 1000);
    const t = d.toLocaleTimeString([], o);
    return chart.window > 3600 && d.getHours() === 0 && d.getMinutes() === 0 ? d.toLocaleDateString() : t;
  }
  function chartDestroy() { if (chart.plot) { chart.plot.destroy(); chart.plot = null; } }
  function chartRebuild() {
    chartDestroy();
    if (!chart.topics.length || !window.uPlot) return;
    const el = $('#chart');
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue('--fg').trim(), grid = css.getPropertyValue('--line').trim();
    const cols = colors();
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const opts = {
      width: el.clientWidth || 600, height: narrow ? 240 : 320,
      scales: { x: { time: true } },
      // One line of local time per tick, spaced so labels never overlap.
      axes: [Object.assign({ space: narrow ? 55 : 90, values: (u, splits) => splits.map(timeLabel) }, axis), Object.assign({ size: 60 }, axis)],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      series: [{ label: 'time' }].concat(chart.topics.map((t, i) => {
        const s = series.get(t);
        return { label: t + (s && s.unit ? ' (' + s.unit + ')' : ''), stroke: cols[i % cols.length], width: 2, spanGaps: true, points: { show: false } };
      })),
    };
    if (chart.topics.length === 1) {
      const c = cols[0];
      opts.series.push({ label: 'min', stroke: c, width: 1, alpha: 0.35, spanGaps: true, points: { show: false } },
        { label: 'max', stroke: c, width: 1, alpha: 0.35, spanGaps: true, points: { show: false } });
      opts.bands = [{ series: [3, 2], fill: c + '33' }];
    }
    // A drag zooms (uPlot sets the scale, then calls setSelect).
    opts.hooks = { setSelect: [(u) => { if (u.select.width > 0) setTimeout(() => { chart.zoomed = true; announceView(); }); }] };
    chart.plot = new uPlot(opts, aligned(), el);
    chart.zoomed = false;
    $('#chart-view').textContent = '';
    chart.plot.over.addEventListener('dblclick', () => resetView());
    chartDirty = false;
    renderChips();
  }
  // The chart moves when a new point moves it by a few pixels, and at
  // least every 10 s: every 2 s for the 5-minute window on a laptop.
  // Redrawing it (every point, axes and legend) is the largest single
  // paint on the page.
  function chartMs() {
    const w = chart.plot ? chart.plot.width : 600;
    return Math.min(10000, Math.max(1000, chart.window * 1000 / w * 8));
  }
  function chartDue(now) { return chartDirty && chart.plot && now - chart.lastDraw >= chartMs(); }
  function chartRender(now) {
    chart.lastDraw = now; chartDirty = false;
    // A zoomed chart keeps its zoom while live points arrive.
    chart.plot.setData(aligned(), !chart.zoomed);
  }
  // Zoom by keyboard on the focused chart: + and - zoom around the
  // middle, the arrows move by a quarter of the view, 0 (or Escape, or
  // Home) shows the whole window again and follows live values. Every
  // change is said in #chart-view (aria-live).
  function setView(min, max) {
    const x = chart.plot.data[0];
    if (x.length < 2) return;
    const lo = x[0], hi = x[x.length - 1];
    const span = Math.max(max - min, Math.min(2, hi - lo)); // at least 2 s
    if (span >= hi - lo) { resetView(); return; }
    min = Math.min(Math.max(min, lo), hi - span);
    chart.zoomed = true;
    chart.plot.setScale('x', { min, max: min + span });
    announceView();
  }
  function resetView() {
    if (!chart.plot) return;
    chart.zoomed = false;
    chart.plot.setData(aligned(), true);
    announceView();
  }
  function clock(sec) {
    return new Date(sec * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }
  function announceView() {
    const x = chart.plot.scales.x;
    $('#chart-view').textContent = chart.zoomed
      ? 'Zoomed to ' + clock(x.min) + ' – ' + clock(x.max) + '. Press 0 to show the whole window.'
      : 'Showing the whole window, following live values.';
  }
  $('#chart').addEventListener('keydown', (e) => {
    if (!chart.plot || e.altKey || e.ctrlKey || e.metaKey) return;
    const x = chart.plot.scales.x, mid = (x.min + x.max) / 2, span = x.max - x.min;
    switch (e.key) {
      case '+': case '=': setView(mid - span / 4, mid + span / 4); break;
      case '-': case '_': setView(mid - span, mid + span); break;
      case 'ArrowLeft': setView(x.min - span / 4, x.max - span / 4); break;
      case 'ArrowRight': setView(x.min + span / 4, x.max + span / 4); break;
      case '0': case 'Escape': case 'Home': resetView(); break;
      default: return;
    }
    e.preventDefault();
  });
  function renderChips() {
    const ul = $('#chart-series');
    const cols = colors();
    const frag = document.createDocumentFragment();
    chart.topics.forEach((t, i) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      const sw = document.createElement('span');
      sw.className = 'swatch'; sw.style.background = cols[i % cols.length];
      b.append(sw, t + ' ✕');
      b.setAttribute('aria-label', 'Remove ' + t + ' from the chart');
      b.addEventListener('click', () => chartToggle(t, false));
      li.append(b); frag.append(li);
    });
    ul.replaceChildren(frag);
    $('#chart-title').textContent = chart.topics.length === 1 ? chart.topics[0] : 'Chart';
  }
  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => {
      chart.window = Number(b.dataset.window);
      for (const o of document.querySelectorAll('[data-window]')) o.setAttribute('aria-pressed', String(o === b));
      chartLoad();
    });
  }
  $('#chart-close').addEventListener('click', () => { chart.topics = []; chartLoad(); });
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (chart.plot) chart.plot.setSize({ width: $('#chart').clientWidth, height: narrow ? 240 : 320 }); }, 150);
  });

  // ---- start -----------------------------------------------------------
  async function start() {
    readColors();
    pollStatus();
    let latest = [];
    try {
      const r = await fetch('/api/series', { cache: 'no-store' });
      if (r.status === 401) { location.reload(); return; }
      latest = await r.json();
    } catch (e) { /* the stream will fill the tiles */ }
    for (const r of latest) apply(r);
    if (!latest.length) $('#empty').hidden = false;
    connect();
    schedule();
    // Sparklines: the last few minutes, decimated, for every series.
    try {
      const since = new Date(Date.now() - SPARK_WINDOW * 1000).toISOString();
      const r = await fetch('/api/history?since=' + since + '&points=' + (SPARK_N / 2), { cache: 'no-store' });
      if (r.ok) {
        for (const sr of await r.json()) {
          const s = series.get(sr.topic);
          if (!s) continue;
          // Points that arrived live meanwhile stay after the backfill.
          const keep = [];
          for (let i = 0; i < s.n; i++) {
            const k = (s.head - s.n + i + SPARK_N) % SPARK_N;
            keep.push([s.st[k], s.sv[k]]);
          }
          s.n = 0; s.head = 0;
          for (const b of sr.buckets) s.push(Date.parse(b.ts) / 1000, b.last);
          const last = s.n ? s.st[(s.head - 1 + SPARK_N) % SPARK_N] : -Infinity;
          for (const [t, v] of keep) if (t > last) s.push(t, v);
        }
        schedule();
      }
    } catch (e) { /* sparklines fill live */ }
    detectProto();
  }

  // Read-only view for tests and curious technicians (devtools).
  window.eddy = {
    state: () => ({ conn: connState, paused, skipped, lastSeq, applied, frameMs, frames, streamMs, paintMs: PAINT_MS, proto: $('#proto').textContent, rate: RATE }),
    values: () => Object.fromEntries([...series.values()].map((s) => [s.topic, s.d ? s.d.text : null])),
    seqs: () => Object.fromEntries([...series.values()].map((s) => [s.topic, s.seq])),
    chart: () => ({ topics: chart.topics.slice(), url: chart.url, zoomed: !!chart.zoomed,
      view: chart.plot ? [chart.plot.scales.x.min, chart.plot.scales.x.max] : null, data: Object.fromEntries([...chart.data].map(([k, d]) => [k, { t: d.t.slice(), v: d.v.slice() }])) }),
  };
  start();
})();
