// tashooks dashboard: plain JS, no build step, no third-party code.
//
// Every data call sends the admin token as "Authorization: Bearer"; the token lives in this
// tab's sessionStorage and never in a URL. The live stream is read with fetch() (which can
// send that header; EventSource cannot) and parsed as Server-Sent Events here.
// Everything that comes from events is put on the page as text, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'tashooks.admin-token';
  const MAX_ROWS = 200;
  const STATS_REFRESH_MS = 300000; // between, the live stream keeps the counts
  const DL_REFRESH_MS = 15000;
  const RECONNECT_MS = 2000;
  const SERIES = {
    deliveries: ['accepted', 'duplicate', 'rejected'],
    runs: ['ok', 'failed', 'deferred', 'throttled', 'stale', 'no_match'],
  };

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let session = null; // {abort: AbortController, timers: []} while signed in
  let lastEventId = null;
  let paused = false;
  let chart = null; // {bucketMs, sinceMs, untilMs, rangeMs, buckets: [{startMs, deliveries, runs}]}

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---------- helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pad = (n) => String(n).padStart(2, '0');
  function clock(ms, seconds = true) {
    const d = new Date(ms);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return seconds ? `${hm}:${pad(d.getSeconds())}` : hm;
  }
  const streamMs = (id) => Number(String(id).split('-')[0]);
  const badge = (status) => el('span', {class: `badge b-${status}`, text: status});

  function notice(message, isError = false) {
    const box = $('notice');
    box.textContent = message;
    box.classList.toggle('error', isError);
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.textContent = ''; }, 8000);
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
    });
  }

  async function api(method, path, body) {
    const headers = {Authorization: `Bearer ${token}`, Accept: 'application/json'};
    const init = {method, headers, cache: 'no-store', signal: session && session.abort.signal};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      signOut('The admin token was refused; sign in again.');
      throw new ApiError(401, 'unauthorized', 'unauthorized');
    }
    const doc = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) {
      const error = (doc && doc.error) || {};
      throw new ApiError(resp.status, error.code || 'error', error.message || `HTTP ${resp.status}`);
    }
    return doc;
  }

  function report(error) {
    if (error && error.name === 'AbortError') return;
    if (error instanceof ApiError && error.status === 401) return;
    notice(error instanceof Error ? error.message : String(error), true);
  }

  // ---------- sign in / out

  function showLogin(message) {
    $('dash').hidden = true;
    $('signout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  function signOut(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (session) {
      session.abort.abort();
      session.timers.forEach(clearInterval);
      session = null;
    }
    setLive(false);
    showLogin(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const given = $('token').value.trim();
    if (!given) return;
    $('login-submit').disabled = true;
    try {
      const resp = await fetch('/deadletters?limit=1', {
        headers: {Authorization: `Bearer ${given}`}, cache: 'no-store',
      });
      if (resp.status === 401) {
        $('login-error').textContent = 'That token was refused.';
        return;
      }
      if (!resp.ok) {
        $('login-error').textContent = `The admin API answered ${resp.status}; try again.`;
        return;
      }
      token = given;
      sessionStorage.setItem(TOKEN_KEY, token);
      start();
    } catch (error) {
      $('login-error').textContent = `Cannot reach tashooks: ${error.message}`;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function start() {
    $('login').hidden = true;
    $('dash').hidden = false;
    $('signout').hidden = false;
    session = {abort: new AbortController(), timers: []};
    lastEventId = null;
    loadStats().catch(report);
    loadDeadLetters().catch(report);
    session.timers.push(setInterval(() => loadStats().catch(report), STATS_REFRESH_MS));
    session.timers.push(setInterval(() => loadDeadLetters().catch(report), DL_REFRESH_MS));
    session.timers.push(setInterval(() => drawChart(), 10000));
    streamLoop(session.abort.signal);
  }

  // ---------- live stream (SSE over fetch)

  function setLive(on) {
    const live = $('live');
    live.textContent = on ? 'live' : 'offline';
    live.classList.toggle('on', on);
    live.classList.toggle('off', !on);
  }

  function parseBlock(block) {
    const message = {id: null, event: 'message', data: []};
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') message.id = value;
      else if (field === 'event') message.event = value;
      else if (field === 'data') message.data.push(value);
    }
    return message.data.length ? message : null;
  }

  async function streamLoop(signal) {
    while (!signal.aborted) {
      try {
        const headers = {Authorization: `Bearer ${token}`, Accept: 'text/event-stream'};
        if (lastEventId) headers['Last-Event-ID'] = lastEventId;
        const resp = await fetch('/events/stream', {headers, signal, cache: 'no-store'});
        if (resp.status === 401) {
          signOut('The admin token was refused; sign in again.');
          return;
        }
        if (!resp.ok || !resp.body) throw new Error(`live stream: HTTP ${resp.status}`);
        setLive(true);
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer = (buffer + value).replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const message = parseBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (message) onMessage(message);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        console.warn('live stream:', error);
      }
      setLive(false);
      await sleep(RECONNECT_MS, signal); // then go on after lastEventId: nothing is lost
    }
  }

  function onMessage(message) {
    let record;
    try {
      record = JSON.parse(message.data.join('\n'));
    } catch {
      return;
    }
    if (message.id) lastEventId = message.id;
    countRecord(record);
    if (record.kind === 'run' && record.status === 'failed') scheduleDeadLetters();
    if (!paused) addRow(record);
  }

  function summary(record) {
    switch (record.kind) {
      case 'delivery':
        return [el('strong', {text: record.type || '?'}), record.resource ? ` ${record.resource}` : null];
      case 'run':
        return [
          'rule ', el('strong', {text: record.rule || '—'}),
          typeof record.duration_ms === 'number' ? ` in ${record.duration_ms} ms` : null,
          record.error ? el('span', {class: 'err', text: ` ${record.error}`}) : null,
        ];
      case 'step':
        return [
          `rule ${record.rule || '—'} step `,
          el('strong', {text: String(record.step_id || record.step_type || record.step || '?')}),
          record.error ? el('span', {class: 'err', text: ` ${record.error}`}) : null,
        ];
      case 'rejected':
        return [el('strong', {text: record.reason || 'rejected'}),
          ` ×${record.count || 1}`, record.source ? ` from ${record.source}` : null];
      default:
        return [JSON.stringify(record).slice(0, 160)];
    }
  }

  // Rows are added once a frame, however fast records come.
  let pendingRows = [];
  function addRow(record) {
    if (record.kind === 'step' && !$('show-steps').checked) return;
    pendingRows.push(record);
    if (pendingRows.length > MAX_ROWS) pendingRows = pendingRows.slice(-MAX_ROWS);
    if (pendingRows.length === 1) requestAnimationFrame(flushRows);
  }

  function flushRows() {
    const records = pendingRows;
    pendingRows = [];
    const list = $('stream');
    const empty = list.querySelector('.empty');
    if (empty) empty.remove();
    const fragment = document.createDocumentFragment();
    for (const record of records.reverse()) fragment.append(row(record));
    list.prepend(fragment);
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  }

  function row(record) {
    const status = record.kind === 'rejected' ? 'rejected' : (record.status || '');
    return el('li', {
      class: `row k-${record.kind}`, 'data-kind': record.kind, 'data-id': record.id || null,
      'data-status': status || null,
    },
    el('time', {text: clock(streamMs(record.stream_id))}),
    el('span', {class: 'kind', text: record.kind}),
    status ? badge(status) : el('span'),
    el('span', {class: 'what'}, ...summary(record)),
    el('code', {class: 'id', text: record.id || ''}));
  }

  // ---------- chart

  function rangeSetting() {
    const [range, bucket] = $('range').value.split('/');
    return {range, bucket};
  }

  async function loadStats() {
    const {range, bucket} = rangeSetting();
    const doc = await api('GET', `/stats?bucket=${encodeURIComponent(bucket)}&since=${encodeURIComponent(range)}`);
    const sinceMs = Date.parse(doc.since);
    const untilMs = Date.parse(doc.until);
    chart = {
      bucketMs: doc.bucket_s * 1000,
      rangeMs: untilMs - sinceMs,
      buckets: doc.buckets.map((b) => ({startMs: b.start_ms, deliveries: b.deliveries, runs: b.runs})),
    };
    $('chart-note').textContent = doc.truncated
      ? `Busy: counts before ${clock(Date.parse(doc.scanned_from), false)} were not all read.`
      : '';
    drawChart();
  }

  function emptyBucket(startMs) {
    const bucket = {startMs, deliveries: {}, runs: {}};
    for (const group of Object.keys(SERIES)) for (const s of SERIES[group]) bucket[group][s] = 0;
    return bucket;
  }

  // Keep the window sliding: buckets up to now, none older than the range.
  function slide(nowMs) {
    if (!chart) return;
    const {bucketMs, buckets} = chart;
    let last = buckets.length ? buckets[buckets.length - 1].startMs : nowMs - (nowMs % bucketMs);
    while (last + bucketMs <= nowMs) {
      last += bucketMs;
      buckets.push(emptyBucket(last));
    }
    const oldest = nowMs - chart.rangeMs - bucketMs;
    while (buckets.length && buckets[0].startMs < oldest) buckets.shift();
  }

  function countRecord(record) {
    if (!chart) return;
    const ms = streamMs(record.stream_id);
    slide(Math.max(ms, Date.now()));
    const first = chart.buckets.length ? chart.buckets[0].startMs : 0;
    const bucket = chart.buckets[Math.floor((ms - first) / chart.bucketMs)];
    if (!bucket || ms < first) return;
    if (record.kind === 'delivery' && record.status in bucket.deliveries) bucket.deliveries[record.status] += 1;
    else if (record.kind === 'rejected') bucket.deliveries.rejected += Number(record.count) || 1;
    else if (record.kind === 'run' && record.status in bucket.runs) bucket.runs[record.status] += 1;
    else return;
    if (!countRecord.pending) {
      countRecord.pending = true;
      requestAnimationFrame(() => { countRecord.pending = false; drawChart(); });
    }
  }

  function drawChart() {
    const root = $('chart');
    if (!chart) return;
    slide(Date.now());
    root.replaceChildren();
    const W = 720, left = 44, right = 8, panelH = 84;
    const panels = [
      {group: 'deliveries', title: 'Deliveries', top: 14},
      {group: 'runs', title: 'Rule runs', top: 14 + panelH + 34},
    ];
    const n = Math.max(1, chart.buckets.length);
    const step = (W - left - right) / n;
    const barW = Math.max(1, step * 0.8);
    for (const panel of panels) {
      const totals = chart.buckets.map((b) => SERIES[panel.group].reduce((sum, s) => sum + b[panel.group][s], 0));
      const max = Math.max(1, ...totals);
      const base = panel.top + panelH;
      root.append(svg('text', {x: left, y: panel.top - 4, class: 'ptitle'}, panel.title));
      root.append(svg('text', {x: left - 6, y: panel.top + 8, class: 'axis', 'text-anchor': 'end'}, String(max)));
      root.append(svg('text', {x: left - 6, y: base, class: 'axis', 'text-anchor': 'end'}, '0'));
      root.append(svg('line', {x1: left, x2: W - right, y1: panel.top, y2: panel.top, class: 'grid'}));
      root.append(svg('line', {x1: left, x2: W - right, y1: base, y2: base, class: 'baseline'}));
      chart.buckets.forEach((bucket, i) => {
        let y = base;
        const x = left + i * step + (step - barW) / 2;
        for (const s of SERIES[panel.group]) {
          const count = bucket[panel.group][s];
          if (!count) continue;
          const h = (count / max) * panelH;
          y -= h;
          const rect = svg('rect', {x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: Math.max(h, 0.5).toFixed(1), class: `s-${s}`});
          rect.append(svg('title', {}, `${clock(bucket.startMs, false)} ${s}: ${count}`));
          root.append(rect);
        }
      });
    }
    // Time labels under the lower panel: at round times, at most about seven of them.
    const span = n * chart.bucketMs;
    const every = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720].map((m) => m * 60000)
      .find((ms) => ms >= chart.bucketMs && span / ms <= 7) || span;
    const offset = new Date().getTimezoneOffset() * 60000; // round in local time
    chart.buckets.forEach((bucket, i) => {
      if ((bucket.startMs - offset) % every) return;
      const x = left + i * step + step / 2;
      root.append(svg('text', {x: x.toFixed(1), y: panels[1].top + panelH + 14, class: 'axis', 'text-anchor': 'middle'}, clock(bucket.startMs, false)));
    });
  }

  function drawLegend() {
    const legend = $('legend');
    for (const group of Object.keys(SERIES)) {
      const part = el('span', {class: 'lgroup'}, el('span', {class: 'lname', text: group === 'runs' ? 'runs:' : 'deliveries:'}));
      for (const s of SERIES[group]) part.append(el('span', {class: 'litem'}, el('i', {class: `sw s-${s}`}), s.replace('_', ' ')));
      legend.append(part);
    }
  }

  // ---------- dead letters

  function scheduleDeadLetters() {
    clearTimeout(scheduleDeadLetters.timer);
    scheduleDeadLetters.timer = setTimeout(() => loadDeadLetters().catch(report), 500);
  }

  async function loadDeadLetters() {
    const doc = await api('GET', '/deadletters?limit=100');
    const body = $('dl-body');
    body.replaceChildren(...doc.data.map(deadLetterRow));
    $('dl-count').textContent = String(doc.data.length) + (doc.next_cursor ? '+' : '');
    $('dl-empty').hidden = doc.data.length > 0;
    $('dl-more').hidden = !doc.next_cursor;
  }

  function deadLetterRow(dl) {
    const event = dl.event || {};
    const step = dl.step_id || (dl.step !== null && dl.step !== undefined ? `#${dl.step}` : null);
    const retry = el('button', {type: 'button', class: 'retry', text: 'Retry'});
    const remove = el('button', {type: 'button', class: 'delete quiet', text: 'Delete'});
    const row = el('tr', {'data-id': dl.id},
      el('td', {class: 'nowrap', title: new Date(dl.failed_at_ms).toISOString(), text: clock(dl.failed_at_ms)}),
      el('td', {}, el('strong', {text: dl.rule || '(all rules)'}),
        step ? el('span', {class: 'muted', text: ` ${step}${dl.step_type ? ` (${dl.step_type})` : ''}`}) : null),
      el('td', {}, String(event.event || '?'), el('br'), el('code', {class: 'id', text: dl.event_id})),
      el('td', {class: 'err', title: dl.error, text: `${dl.error}`.slice(0, 240)},
        el('span', {class: 'muted', text: ` (${dl.attempts} attempts)`})),
      el('td', {class: 'actions'}, retry, remove));
    retry.addEventListener('click', () => retryDeadLetter(dl, row, retry));
    remove.addEventListener('click', () => deleteDeadLetter(dl, row, remove));
    return row;
  }

  async function retryDeadLetter(dl, row, button) {
    button.disabled = true;
    try {
      const queued = await api('POST', `/deadletters/${encodeURIComponent(dl.id)}/retry`);
      row.remove();
      notice(`Retry queued: ${queued.job_id}`);
      scheduleDeadLetters();
    } catch (error) {
      button.disabled = false;
      report(error);
      if (error instanceof ApiError && error.status === 404) scheduleDeadLetters();
    }
  }

  async function deleteDeadLetter(dl, row, button) {
    if (button.dataset.armed !== 'yes') { // a second click within 4 s confirms
      button.dataset.armed = 'yes';
      button.textContent = 'Delete?';
      setTimeout(() => { button.dataset.armed = ''; button.textContent = 'Delete'; }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api('DELETE', `/deadletters/${encodeURIComponent(dl.id)}`);
      row.remove();
      notice(`Dead letter ${dl.id} deleted`);
      scheduleDeadLetters();
    } catch (error) {
      button.disabled = false;
      report(error);
    }
  }

  // ---------- dry run

  async function dryRun(event) {
    event.preventDefault();
    const out = $('dry-result');
    const text = $('dry-event').value;
    try {
      JSON.parse(text);
    } catch (error) {
      out.replaceChildren(el('p', {class: 'error', text: `Not valid JSON: ${error.message}`}));
      return;
    }
    $('dry-submit').disabled = true;
    try {
      const doc = await api('POST', '/dry-run', text);
      out.replaceChildren(...renderDryRun(doc));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      out.replaceChildren(el('p', {class: 'error', text: error.message}));
    } finally {
      $('dry-submit').disabled = false;
    }
  }

  function renderDryRun(doc) {
    const parts = [];
    parts.push(el('p', {class: 'fired'}, doc.fired.length
      ? `Fires: ${doc.fired.join(', ')}` : 'No rule fires for this event.'));
    if (doc.note) parts.push(el('p', {class: 'muted small', text: doc.note}));
    if (doc.placeholders && doc.placeholders.length) {
      parts.push(el('p', {class: 'muted small',
        text: `Environment values are not shown: ${doc.placeholders.map((n) => '${' + n + '}').join(', ')} read as <NAME>.`}));
    }
    const list = el('ul', {class: 'plans'});
    for (const plan of doc.rules) {
      const item = el('li', {class: plan.fires ? 'fires' : 'idle', 'data-rule': plan.rule},
        el('span', {class: 'mark', text: plan.fires ? '✓' : '·'}),
        el('strong', {text: plan.rule}),
        plan.reason ? el('span', {class: 'muted', text: ` — ${plan.reason}`}) : null);
      for (const note of plan.notes || []) item.append(el('div', {class: 'muted small', text: note}));
      if (plan.steps && plan.steps.length) {
        const steps = el('ol', {class: 'steps'});
        for (const s of plan.steps) {
          steps.append(el('li', {}, badge(s.status), ' ',
            el('span', {text: s.description || s.label}),
            s.note ? el('div', {class: 'muted small', text: s.note}) : null,
            s.error ? el('div', {class: 'err small', text: s.error}) : null));
        }
        item.append(steps);
      }
      list.append(item);
    }
    parts.push(list);
    return parts;
  }

  // ---------- wiring

  document.addEventListener('DOMContentLoaded', () => {
    drawLegend();
    $('login-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut(''));
    $('range').addEventListener('change', () => loadStats().catch(report));
    $('dl-refresh').addEventListener('click', () => loadDeadLetters().catch(report));
    $('pause').addEventListener('click', () => {
      paused = !paused;
      $('pause').textContent = paused ? 'Resume' : 'Pause';
    });
    $('dry-form').addEventListener('submit', dryRun);
    if (document.body.dataset.dryRun !== 'on') {
      $('dry-off').hidden = false;
      $('dry-event').disabled = true;
      $('dry-submit').disabled = true;
    }
    if (token) start();
    else showLogin('');
  });
})();
