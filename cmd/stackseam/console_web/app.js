// stackseam console: plain JavaScript, no framework, no build step.
//
// Every value from a stack (ids, metadata, reasons, logs) is attacker-controlled: it only ever
// reaches the page as text (textContent, createTextNode), never as HTML, and links are built
// from encodeURIComponent'ed ids under "#/".
'use strict';

let session = { allowActions: false, csrf: '', operator: '' };
let current = null; // the view on screen: {refresh()} for live updates

// el builds an element: attrs set as attributes (on* as listeners), children as nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, opts) {
  const res = await fetch(path, Object.assign({ credentials: 'same-origin' }, opts || {}));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || (res.status + ' ' + res.statusText));
    err.body = body;
    throw err;
  }
  return body;
}

function post(path, data) {
  return api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Stackseam-Csrf': session.csrf },
    body: JSON.stringify(data),
  });
}

function duration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '?';
  if (ms < 0) ms = 0;
  if (ms < 1000) return Math.round(ms) + 'ms';
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm' + String(s % 60).padStart(2, '0') + 's';
  const h = Math.floor(m / 60);
  if (h < 48) return h + 'h' + String(m % 60).padStart(2, '0') + 'm';
  return Math.floor(h / 24) + 'd' + String(h % 24).padStart(2, '0') + 'h';
}

function since(now, t) { return duration(Date.parse(now) - Date.parse(t)); }

function utc(t) { return new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'); }

function stackLink(id) { return el('a', { href: '#/stack/' + encodeURIComponent(id) }, id); }

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// confirmAction asks before anything changes; resolves true when confirmed.
function confirmAction(text, okLabel) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel || 'Confirm';
  return new Promise((resolve) => {
    const done = (v) => {
      ok.removeEventListener('click', yes);
      cancel.removeEventListener('click', no);
      dlg.removeEventListener('cancel', no);
      dlg.close();
      resolve(v);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dlg.addEventListener('cancel', no);
    dlg.showModal();
    cancel.focus();
  });
}

// ---------- routing ----------

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query] = h.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  return { page: parts[0] || 'stacks', arg: parts.slice(1).join('/'), params: new URLSearchParams(query || '') };
}

function route() {
  const r = parseHash();
  const view = document.getElementById('view');
  view.replaceChildren();
  for (const a of document.querySelectorAll('.top nav a')) a.removeAttribute('aria-current');
  const nav = r.page === 'stack' ? 'stacks' : r.page === 'machine' ? 'machines' : r.page;
  const navLink = document.getElementById('nav-' + nav);
  if (navLink) navLink.setAttribute('aria-current', 'page');
  if (r.page === 'stack') current = storyPage(view, r.arg);
  else if (r.page === 'machines') current = machinesPage(view);
  else if (r.page === 'machine') current = machinePage(view, r.arg);
  else current = stacksPage(view, r.params);
}

// ---------- stacks ----------

function stacksPage(view, params) {
  document.title = 'Stacks · stackseam console';
  const machineSel = el('select', { id: 'f-machine' }, el('option', { value: '' }, 'all machines'));
  const stateSel = el('select', { id: 'f-state' }, el('option', { value: '' }, 'all states'));
  const search = el('input', { id: 'f-search', type: 'search', placeholder: 'stack id contains…', value: params.get('q') || '' });
  const stuckOnly = el('input', { id: 'f-stuck', type: 'checkbox' });
  if (params.get('stuck') === '1') stuckOnly.checked = true;
  const summary = el('p', { class: 'sub', id: 'stacks-summary', role: 'status' });
  const tbody = el('tbody', { id: 'stacks-body' });
  const problem = el('div', { role: 'alert' });
  let wanted = { machine: params.get('machine') || '', state: params.get('state') || '' };
  let shownRows = null;

  view.append(
    el('h1', {}, 'Stacks'),
    el('div', { class: 'filters' },
      el('label', {}, 'Machine', machineSel),
      el('label', {}, 'State', stateSel),
      el('label', {}, 'Search', search),
      el('label', { class: 'inline' }, stuckOnly, 'stuck only')),
    summary, problem,
    el('div', { class: 'scroll' }, el('table', { id: 'stacks' },
      el('thead', {}, el('tr', {},
        ['Stack', 'Machine', 'State', 'Pending', 'Failed', 'Age', 'In state', 'Idle', 'Attention'].map((h) => el('th', { scope: 'col' }, h)))),
      tbody)));

  function fillSelect(sel, values, chosen, allLabel) {
    const keep = chosen;
    // Rebuilt only when the choices change: an open drop-down survives live updates.
    const sig = JSON.stringify([values, keep]);
    if (sel.dataset.sig === sig) return;
    sel.dataset.sig = sig;
    sel.replaceChildren(el('option', { value: '' }, allLabel), ...values.map((v) => el('option', { value: v }, v)));
    if (keep && !values.includes(keep)) sel.append(el('option', { value: keep }, keep));
    sel.value = keep;
  }

  async function refresh() {
    const q = new URLSearchParams();
    if (wanted.machine) q.set('machine', wanted.machine);
    if (wanted.state) q.set('state', wanted.state);
    if (search.value) q.set('q', search.value);
    let data;
    try {
      data = await api('/api/stacks?' + q.toString());
      problem.replaceChildren();
    } catch (e) {
      problem.replaceChildren(el('p', { class: 'error' }, 'Cannot list stacks: ' + e.message));
      return;
    }
    const machines = Object.keys(data.machines).sort();
    fillSelect(machineSel, machines, wanted.machine, 'all machines');
    const states = new Set();
    for (const m of machines) if (!wanted.machine || m === wanted.machine) for (const s of data.machines[m]) states.add(s);
    fillSelect(stateSel, [...states].sort(), wanted.state, 'all states');
    const rows = data.stacks.filter((s) => !stuckOnly.checked || (s.stuck && s.stuck.length));
    const sig = JSON.stringify([rows, data.total]);
    if (sig === shownRows) return; // nothing moved: keep the rows (and the pointer's target) as they are
    shownRows = sig;
    const stuck = data.stacks.filter((s) => s.stuck && s.stuck.length).length;
    summary.textContent = data.total + ' stack' + (data.total === 1 ? '' : 's') + (stuck ? ', ' + stuck + ' stuck' : '') +
      (data.total > data.stacks.length ? ' (first ' + data.stacks.length + ' shown: narrow the filters)' : '');
    tbody.replaceChildren(...rows.map((s) => {
      const stuckNow = s.stuck && s.stuck.length;
      // data-label names each cell where a phone shows rows as cards (app.css).
      return el('tr', { class: stuckNow ? 'stuck' : '', 'data-stack': s.id, 'data-state': s.state },
        el('td', { class: 'id' }, stackLink(s.id)),
        el('td', { 'data-label': 'machine' }, s.machine),
        el('td', { 'data-label': 'state' }, s.state),
        el('td', { class: 'num', 'data-label': 'pending' }, s.pending),
        el('td', { class: 'num', 'data-label': 'failed' }, s.failed ? el('span', { class: 'badge bad' }, s.failed) : '0'),
        el('td', { 'data-label': 'age' }, since(data.now, s.createdAt)),
        el('td', { 'data-label': 'in state' }, since(data.now, s.stateEnteredAt)),
        el('td', { 'data-label': 'idle' }, since(data.now, s.lastActivityAt)),
        el('td', { class: 'attention' }, stuckNow ? [el('span', { class: 'badge warn' }, 'stuck'), el('ul', { class: 'why' }, s.stuck.map((w) => el('li', {}, w)))] : ''));
    }));
    if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: 9 }, 'No stacks match.')));
  }

  function syncHash() {
    const q = new URLSearchParams();
    if (wanted.machine) q.set('machine', wanted.machine);
    if (wanted.state) q.set('state', wanted.state);
    if (search.value) q.set('q', search.value);
    if (stuckOnly.checked) q.set('stuck', '1');
    history.replaceState(null, '', '#/stacks' + (q.toString() ? '?' + q.toString() : ''));
  }
  machineSel.addEventListener('change', () => { wanted.machine = machineSel.value; wanted.state = ''; syncHash(); refresh(); });
  stateSel.addEventListener('change', () => { wanted.state = stateSel.value; syncHash(); refresh(); });
  search.addEventListener('input', debounce(() => { syncHash(); refresh(); }, 200));
  stuckOnly.addEventListener('change', () => { syncHash(); refresh(); });
  refresh();
  return { refresh };
}

// ---------- a stack's story ----------

// parseMeta reads KEY=VALUE lines (blank lines skipped) into an object.
// countsLine is a plan or drift summary's counts, as `stackseam plan` prints them.
function countsLine(p) {
  const n = (v) => (v === undefined || v === null ? '?' : v);
  return n(p.add) + ' to add, ' + n(p.change) + ' to change, ' + n(p.destroy) + ' to destroy, ' + n(p.replace) + ' to replace';
}

// summaryLine is the summary a transition carries, on one line: what the task found, the counts
// and the addresses.
function summaryLine(p) {
  const found = p.kind === 'plan' ? (p.found ? 'changes' : 'no changes') : (p.found ? 'drift' : 'no drift');
  const changed = (p.drifted && p.drifted.length ? p.drifted : p.addresses) || [];
  return p.kind + ' ' + p.task + ': ' + found + ' · ' + countsLine(p) + (changed.length ? ' · ' + changed.join(', ') : '');
}

function parseMeta(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const i = line.indexOf('=');
    if (i <= 0) throw new Error('Metadata lines are KEY=VALUE, not "' + line + '"');
    out[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  return out;
}

function storyPage(view, id) {
  document.title = id + ' · stackseam console';
  // One metadata field for the page's life: live refreshes redraw around it and give its focus back.
  let shownKey = null;
  const meta = el('textarea', { id: 'send-meta', rows: 2, placeholder: 'appVersion=2.4.2', spellcheck: 'false' });
  const comment = el('textarea', { id: 'approval-comment', rows: 2, maxlength: 1024, placeholder: 'reviewed with the DBA' });
  const top = el('div', {});
  const status = el('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const logBox = el('section', { id: 'log', 'aria-label': 'Task log' });
  view.append(el('p', {}, el('a', { href: '#/stacks' }, '← all stacks')), el('h1', {}, id), top, status, logBox);

  async function showLog(run) {
    logBox.replaceChildren(el('h2', {}, 'Log of ' + run.task + ' (attempt ' + run.attempt + ')'), el('p', { class: 'sub' }, 'loading…'));
    try {
      const l = await api('/api/log?stack=' + encodeURIComponent(id) + '&run=' + encodeURIComponent(run.runId));
      logBox.replaceChildren(el('h2', {}, 'Log of ' + run.task + ' (attempt ' + run.attempt + ')'),
        el('p', { class: 'sub' }, l.location + (l.cut ? ' — only the end of a long log is shown' : '')),
        el('pre', { class: 'log', tabindex: '0' }, l.text));
    } catch (e) {
      logBox.replaceChildren(el('h2', {}, 'Log of ' + run.task), el('p', { class: 'error' }, e.message));
    }
    logBox.scrollIntoView({ block: 'nearest' });
  }

  async function act(kind, label, payload, question) {
    if (!(await confirmAction(question, label))) return;
    status.textContent = 'sending…';
    try {
      const r = await post('/api/' + kind, payload);
      if (kind === 'approve') comment.value = '';
      status.textContent = 'Sent ' + r.sent + ' as ' + r.operator + '. The timeline shows it once the state manager applies it.';
    } catch (e) {
      status.textContent = 'Not sent: ' + e.message;
    }
  }

  async function refresh() {
    let s;
    try {
      s = await api('/api/stack?id=' + encodeURIComponent(id));
    } catch (e) {
      top.replaceChildren(el('p', { class: 'error' }, e.message));
      return;
    }
    // A change elsewhere (another stack's event) leaves this page as it is: redrawing would move
    // buttons under the pointer and reset what the reader has scrolled to.
    const key = JSON.stringify([s.entries.length, s.stack && s.stack.version, s.troubles, s.accepts, s.approvals]);
    if (key === shownKey) return;
    shownKey = key;
    const parts = [el('p', { class: 'sub', id: 'story-header' }, s.header)];
    if (s.troubles.length) {
      parts.push(el('div', { class: 'notice', role: 'note' }, el('strong', {}, 'Needs attention'),
        el('ul', {}, s.troubles.map((t) => el('li', {}, t)))));
    }
    const st = s.stack;
    if (st) {
      parts.push(el('dl', { class: 'meta' },
        el('dt', {}, 'machine'), el('dd', {}, el('a', { href: '#/machine/' + encodeURIComponent(st.machine) }, st.machine)),
        el('dt', {}, 'state'), el('dd', { id: 'story-state' }, st.state + (st.previousState ? ' (from ' + st.previousState + ')' : '') + ' for ' + since(s.now, st.stateEnteredAt)),
        el('dt', {}, 'created'), el('dd', {}, utc(st.createdAt) + ' (' + since(s.now, st.createdAt) + ' ago)'),
        el('dt', {}, 'version'), el('dd', {}, st.version)));
      if (session.allowActions) {
        const buttons = s.accepts.map((ev) => el('button', { type: 'button', class: 'danger', onclick: () => {
          let metadata;
          try { metadata = parseMeta(meta.value); } catch (e) { status.textContent = e.message; return; }
          const extra = Object.keys(metadata).length ? ' with ' + Object.entries(metadata).map(([k, v]) => k + '=' + v).join(', ') : '';
          act('send', 'Send ' + ev, { stack: id, event: ev, version: st.version, metadata },
            'Send ' + ev + extra + ' to stack ' + id + ' (state ' + st.state + ', version ' + st.version + ') as ' + session.operator + '?');
        } }, 'Send ' + ev + '…'));
        if (st.failedTasks) buttons.push(el('button', { type: 'button', class: 'danger', onclick: () =>
          act('retry', 'Retry', { stack: id, pending: false, version: st.version },
            'Dispatch the ' + st.failedTasks + ' failed task(s) of ' + id + ' again as ' + session.operator + '?') }, 'Retry failed tasks…'));
        if (st.pendingTasks) buttons.push(el('button', { type: 'button', class: 'danger', onclick: () =>
          act('retry', 'Retry', { stack: id, pending: true, version: st.version },
            'Dispatch the ' + st.pendingTasks + ' pending task(s) of ' + id + ' again (their current runs\' results will be ignored) as ' + session.operator + '?') }, 'Retry pending tasks…'));
        if (s.approvals.length) parts.push(approvalBox(s, st));
        parts.push(el('h2', {}, 'Actions'),
          s.accepts.length ? el('label', { class: 'meta-input' }, 'Metadata to send with an event (KEY=VALUE, one a line; optional)', meta) : '',
          buttons.length ? el('div', { class: 'actions' }, buttons) : el('p', { class: 'sub' }, 'The state accepts no event.'));
      }
      if (!session.allowActions && s.approvals.length) {
        parts.push(el('p', { class: 'notice', id: 'approval-hint' }, 'State ' + st.state + ' waits for an approval (' + s.approvals.join(' or ') +
          '): this console is read-only; approvers answer with stackseam approve ' + id + ' or stackseam reject ' + id + '.'));
      }
      if (s.plans.length) {
        parts.push(el('h2', {}, 'Plan and drift summaries'), el('div', { id: 'plans' }, s.plans.map((p) => planBox(p, s.runs))));
      }
      const keys = Object.keys(st.metadata || {}).sort();
      parts.push(el('h2', {}, 'Metadata'), keys.length ? el('dl', { class: 'meta', id: 'metadata' },
        keys.flatMap((k) => [el('dt', {}, k), el('dd', {}, typeof st.metadata[k] === 'string' ? st.metadata[k] : JSON.stringify(st.metadata[k]))])) :
        el('p', { class: 'sub' }, '(none)'));
      if (st.tasks && st.tasks.length) {
        parts.push(el('h2', {}, 'Tasks of ' + st.state), el('div', { class: 'scroll' }, el('table', {},
          el('thead', {}, el('tr', {}, ['Task', 'Status', 'Attempt', 'Time', 'Description'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, st.tasks.map((t) => el('tr', {},
            el('td', {}, t.name), el('td', {}, t.status), el('td', { class: 'num' }, t.attempt), el('td', {}, duration(t.durationMs)),
            el('td', {}, el('span', { class: 'pre' }, t.description || ''))))))));
      }
    }
    parts.push(el('h2', {}, 'Timeline'));
    let start = null;
    parts.push(el('ol', { class: 'timeline', id: 'timeline' }, s.entries.map((e) => {
      if (start === null || e.kind === 'created') start = e.at;
      return el('li', { class: 'k-' + e.kind, 'data-kind': e.kind },
        el('time', { datetime: e.at }, utc(e.at).replace(' UTC', '')), el('span', { class: 'rel' }, '+' + since(e.at, start)),
        el('span', { class: 'text' }, e.text, e.summary ? el('span', { class: 'summary' }, summaryLine(e.summary)) : ''));
    })));
    if (s.runs.length) {
      parts.push(el('h2', {}, 'Task runs'), el('div', { class: 'scroll' }, el('table', { id: 'runs' },
        el('thead', {}, el('tr', {}, ['Task', 'State', 'Attempt', 'Status', 'Duration', 'Error', 'Log'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, s.runs.map((r) => el('tr', { 'data-task': r.task },
          el('td', {}, r.task), el('td', {}, r.state), el('td', { class: 'num' }, r.attempt),
          el('td', {}, el('span', { class: 'badge ' + (r.status === 'failed' ? 'bad' : r.status === 'completed' ? 'ok' : '') }, r.status)),
          el('td', {}, r.status === 'abandoned' ? '-' : duration(r.durationMs) + (r.status === 'pending' ? ' so far' : '')),
          el('td', {}, r.error || ''),
          el('td', {}, r.hasLog ? el('button', { type: 'button', class: 'link', onclick: () => showLog(r) }, 'log') : '')))))));
    }
    if (s.states.length) {
      parts.push(el('h2', {}, 'Time in each state'), el('table', {},
        el('tbody', {}, s.states.map((v) => el('tr', {}, el('td', {}, v.state), el('td', {}, duration(v.durationMs) + (v.current ? ' so far (current)' : '')))))));
    }
    const field = [meta, comment].find((f) => document.activeElement === f);
    const [from, to] = field ? [field.selectionStart, field.selectionEnd] : [0, 0];
    top.replaceChildren(...parts);
    if (field && field.isConnected) {
      field.focus();
      field.setSelectionRange(from, to);
    }
  }

  // approvalBox offers the approval events the state waits for (the machine's approvals), sent
  // to the approvals queue with who and why, as `stackseam approve` sends them.
  function approvalBox(s, st) {
    const label = (ev) => ({ APPROVE: 'Approve', REJECT: 'Reject' }[ev] || 'Send ' + ev);
    const box = el('section', { id: 'approval', class: 'approval', 'aria-label': 'Approval' },
      el('h2', {}, 'Waiting for approval'));
    if (!session.approvals) {
      box.append(el('p', { class: 'sub' }, 'Approvals cannot be sent from here: ' + (session.approvalsMissing || 'no approvals queue') + '.'));
      return box;
    }
    const plan = s.plans.find((p) => p.kind === 'plan' && p.found);
    box.append(el('p', { class: 'sub' }, plan ? 'Look at the plan below first. ' : '',
      'Sent to the approvals queue as ' + session.approver + '; the history keeps the name and the comment.'),
    el('label', { class: 'meta-input' }, 'Comment (optional, kept in the history)', comment),
    el('div', { class: 'actions' }, s.approvals.map((ev) => el('button', {
      type: 'button', class: ev === 'APPROVE' ? 'approve' : 'danger', 'data-approval': ev, onclick: () => {
        const why = comment.value.trim() ? ' with the comment "' + comment.value.trim() + '"' : ' without a comment';
        act('approve', label(ev), { stack: id, event: ev, version: st.version, comment: comment.value.trim() },
          label(ev) + ' the pending plan of stack ' + id + ' (state ' + st.state + ', version ' + st.version + ') as ' +
          session.approver + why + '? It is sent as ' + ev + ' to the approvals queue.');
      },
    }, label(ev) + '…'))));
    return box;
  }

  // planBox shows one plan or drift summary as `stackseam plan` prints it, with its run's log.
  function planBox(p, runs) {
    const verdict = p.kind === 'plan' ? (p.found ? 'changes' : 'no changes') : (p.found ? 'DRIFT' : 'no drift');
    const run = runs.find((r) => r.runId === p.runId);
    return el('section', { class: 'plan card', 'data-task': p.task, 'data-kind': p.kind },
      el('h3', {}, p.kind + ' ' + p.task + ': ', el('span', { class: 'badge ' + (p.found ? 'warn' : 'ok') }, verdict)),
      el('p', { class: 'counts' }, countsLine(p)),
      p.addresses.length ? el('ul', { class: 'addresses' }, p.addresses.map((a) => el('li', {}, a)),
        p.addressesOmitted ? el('li', { class: 'sub' }, '… and ' + p.addressesOmitted + ' more (in the log)') : '') : '',
      p.drifted && p.drifted.length ? el('div', {}, el('p', { class: 'sub' }, 'changed outside Terraform:'),
        el('ul', { class: 'addresses' }, p.drifted.map((a) => el('li', {}, a)))) : '',
      el('p', { class: 'sub' }, 'run ' + (p.runId || '?'), p.log ? ' · full text: ' + p.log + ' ' : ' ',
        run && run.hasLog ? el('button', { type: 'button', class: 'link', onclick: () => showLog(run) }, 'show the log') : ''));
  }

  refresh();
  return { refresh };
}

// ---------- machines ----------

function machinesPage(view) {
  document.title = 'Machines · stackseam console';
  const list = el('div', { class: 'cards', id: 'machines' });
  const name = el('input', { id: 'new-name', placeholder: 'new-machine', pattern: '[A-Za-z0-9][A-Za-z0-9._-]*' });
  view.append(el('h1', {}, 'Machines'), el('p', { class: 'sub' }, 'Files in ' + session.machines),
    el('div', { class: 'filters' }, el('label', {}, 'Open or start a machine file', name),
      el('button', { type: 'button', onclick: () => { if (name.value) location.hash = '#/machine/' + encodeURIComponent(name.value); } }, 'Open')),
    list);
  async function refresh() {
    let ms;
    try { ms = await api('/api/machines'); } catch (e) { list.replaceChildren(el('p', { class: 'error' }, e.message)); return; }
    list.replaceChildren(...ms.map((m) => {
      const counts = m.counts || {};
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      const states = m.states.length ? m.states : Object.keys(counts).sort();
      return el('section', { class: 'card', 'data-machine': m.name },
        el('h2', {}, el('a', { href: '#/machine/' + encodeURIComponent(m.name) }, m.name)),
        !m.file ? el('span', { class: 'badge warn' }, 'no file (stacks only)') :
          m.valid ? el('span', { class: 'badge ok' }, 'valid') : el('span', { class: 'badge bad' }, m.problems + ' problem(s)'),
        el('p', { class: 'sub' }, total + ' stack' + (total === 1 ? '' : 's')),
        el('table', {}, el('tbody', {}, states.map((s) => el('tr', {}, el('td', {}, s),
          el('td', { class: 'num' }, counts[s] ? el('a', { href: '#/stacks?machine=' + encodeURIComponent(m.name) + '&state=' + encodeURIComponent(s) }, counts[s]) : '0'))))));
    }));
    if (!ms.length) list.append(el('p', {}, 'No machine files, and no stacks.'));
  }
  refresh();
  return { refresh };
}

function machinePage(view, name) {
  document.title = name + ' · machine · stackseam console';
  const graph = el('div', { class: 'graph', id: 'graph' });
  const counts = el('div', {});
  const gutter = el('pre', { class: 'gutter', 'aria-hidden': 'true' });
  const text = el('textarea', { id: 'editor', spellcheck: 'false', wrap: 'off', autocapitalize: 'off', 'aria-describedby': 'verdict' });
  const verdict = el('p', { id: 'verdict', class: 'status', role: 'status', 'aria-live': 'polite' });
  const problems = el('ul', { class: 'problems', id: 'problems' });
  const saveStatus = el('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const save = el('button', { type: 'button', class: 'danger', id: 'save', disabled: true }, 'Save to ' + (session.machines || 'the machines') + '…');
  let marks = {};
  let lastValid = false;
  let seq = 0;

  view.append(el('p', {}, el('a', { href: '#/machines' }, '← all machines')), el('h1', {}, name),
    el('section', { 'aria-label': 'Graph' }, el('h2', {}, 'Graph'), graph),
    el('div', { class: 'split wide-left' },
      el('section', { 'aria-label': 'Editor' }, el('h2', {}, el('label', { for: 'editor' }, 'Machine file')),
        el('div', { class: 'editor' }, gutter, text), verdict, problems,
        session.allowActions ? [save, saveStatus] : el('p', { class: 'sub' }, 'Read-only console: start it with --allow-actions to save.')),
      el('section', { 'aria-label': 'Stacks in each state' }, counts)));

  function drawGutter() {
    const n = text.value.split('\n').length;
    const lines = [];
    for (let i = 1; i <= n; i++) {
      const m = marks[i];
      lines.push(m ? el('span', { class: m }, (m === 'err' ? '✖ ' : '▲ ') + i) : String(i), '\n');
    }
    gutter.replaceChildren(...lines);
    gutter.scrollTop = text.scrollTop;
  }

  function goTo(line, col) {
    const rows = text.value.split('\n');
    let pos = 0;
    for (let i = 0; i < line - 1 && i < rows.length; i++) pos += rows[i].length + 1;
    pos += Math.max(0, col - 1);
    text.focus();
    text.setSelectionRange(pos, pos);
  }

  function problemItem(p, kind) {
    return el('li', { class: kind, 'data-line': p.line, 'data-column': p.column, 'data-rule': p.rule },
      el('button', { type: 'button', class: 'link', onclick: () => goTo(p.line, p.column) },
        (kind === 'problem' ? 'error' : 'warning') + ' at line ' + p.line + ', column ' + p.column),
      ': ' + p.message + ' [' + p.rule + ']');
  }

  async function check() {
    const mine = ++seq;
    let v;
    try {
      v = await post('/api/validate', { name, body: text.value });
    } catch (e) {
      if (mine === seq) verdict.textContent = 'Cannot validate: ' + e.message;
      return;
    }
    if (mine !== seq) return; // a later keystroke's answer wins
    marks = {};
    for (const p of v.warnings) marks[p.line] = 'warn';
    for (const p of v.problems) marks[p.line] = 'err';
    lastValid = v.valid;
    verdict.textContent = v.valid ? 'Valid' + (v.warnings.length ? ', with ' + v.warnings.length + ' warning(s)' : '') + '.' :
      v.problems.length + ' problem(s).';
    verdict.className = 'status ' + (v.valid ? '' : 'error');
    problems.replaceChildren(...v.problems.map((p) => problemItem(p, 'problem')), ...v.warnings.map((p) => problemItem(p, 'warning')));
    save.disabled = !v.valid;
    drawGutter();
  }
  const checkSoon = debounce(check, 300);
  text.addEventListener('input', () => { text.dataset.edited = '1'; drawGutter(); save.disabled = true; checkSoon(); });
  text.addEventListener('scroll', () => { gutter.scrollTop = text.scrollTop; });
  text.addEventListener('keydown', (e) => {
    // Tab indents (YAML wants spaces); Escape then Tab leaves the editor, so the keyboard is never trapped.
    if (e.key === 'Tab' && !e.shiftKey && !text.dataset.escaped) {
      e.preventDefault();
      text.setRangeText('  ', text.selectionStart, text.selectionEnd, 'end');
      text.dispatchEvent(new Event('input'));
    }
    if (e.key === 'Escape') text.dataset.escaped = '1'; else if (e.key !== 'Tab') delete text.dataset.escaped;
  });
  save.addEventListener('click', async () => {
    if (!lastValid) return;
    if (!(await confirmAction('Save machine ' + name + ' to ' + session.machines + ' as ' + session.operator +
      '? The state manager loads it for the next events of its stacks.', 'Save'))) return;
    saveStatus.textContent = 'saving…';
    try {
      await post('/api/machine/save', { name, body: text.value });
      saveStatus.textContent = 'Saved.';
      drawGraph();
    } catch (e) {
      saveStatus.textContent = 'Not saved: ' + e.message;
    }
  });

  function drawGraph() {
    graph.replaceChildren(el('img', { src: '/api/machine/graph.svg?name=' + encodeURIComponent(name) + '&t=' + Date.now(),
      alt: 'Graph of machine ' + name + ': its states, the events between them, and the number of stacks in each state' }));
    const img = graph.firstChild;
    img.addEventListener('error', () => graph.replaceChildren(el('p', { class: 'sub' }, 'No graph: the saved file is missing or not valid.')));
  }

  async function refresh(first) {
    let m;
    try { m = await api('/api/machine?name=' + encodeURIComponent(name)); } catch (e) { verdict.textContent = e.message; return; }
    const c = m.counts || {};
    const states = m.states.length ? m.states : Object.keys(c).sort();
    counts.replaceChildren(el('h2', {}, 'Stacks in each state'), el('table', { id: 'state-counts' }, el('tbody', {},
      states.map((s) => el('tr', {}, el('td', {}, s), el('td', { class: 'num' }, c[s] || 0))))));
    drawGraph();
    if (first) {
      // Typing before the file arrived wins over the file.
      if (!text.dataset.edited) text.value = m.body;
      text.dataset.loaded = '1';
      drawGutter();
      check();
    }
  }
  refresh(true);
  // Live updates redraw the counts and the graph, never the text being edited.
  return { refresh: () => refresh(false) };
}

// ---------- start ----------

function connectLive() {
  const live = document.getElementById('live');
  const es = new EventSource('/api/live');
  const refreshSoon = debounce(() => { if (current && current.refresh) current.refresh(); }, 150);
  es.addEventListener('open', () => { live.textContent = 'live'; live.className = 'live on'; });
  // Every mark refreshes, the first one too: the page may have loaded just before a change.
  es.addEventListener('change', () => { live.textContent = 'live'; live.className = 'live on'; refreshSoon(); });
  es.addEventListener('trouble', (e) => { live.textContent = 'database trouble: ' + JSON.parse(e.data); live.className = 'live off'; });
  es.addEventListener('error', () => { live.textContent = 'reconnecting…'; live.className = 'live off'; });
}

async function start() {
  try {
    session = await api('/api/session');
  } catch (e) {
    document.getElementById('view').replaceChildren(el('p', { class: 'error' }, e.message));
    return;
  }
  document.getElementById('mode').textContent = session.allowActions ? 'actions allowed · operator ' + session.operator : 'read-only';
  window.addEventListener('hashchange', route);
  route();
  connectLive();
}

start();
