// childguard dashboard. No framework, no CDN: works offline. The token lives
// in sessionStorage and is sent as `Authorization: Bearer`, never as a cookie,
// so other sites cannot make requests on the user's behalf (CSRF-safe).
// All data is written with textContent (no HTML injection).
'use strict';

const ROLES = ['viewer', 'operator', 'approver', 'admin'];
const state = { me: null, view: 'overview', page: 1, perPage: 50, total: 0, auditPage: 1, pollTimer: null };
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem('childguard-token'); }

async function api(path, opts = {}) {
  const headers = { Authorization: 'Bearer ' + token() };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch('/api/v1' + path, { method: opts.method || 'GET', headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401) { logout('Your token was refused; sign in again.'); throw new Error('unauthorized'); }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message + ' (' + data.error.code + ')' : 'HTTP ' + r.status;
    throw new Error(msg);
  }
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement('td'); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(el('td', c === null || c === undefined ? '' : c));
  }
  return tr;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (!rows.length) { const tr = document.createElement('tr'); const td = el('td', empty || 'Nothing here.', 'muted'); td.colSpan = 12; tr.appendChild(td); tbody.appendChild(tr); }
}

function can(role) { return state.me && ROLES.indexOf(state.me.role) >= ROLES.indexOf(role); }

function applyRole() {
  document.querySelectorAll('.needs-operator').forEach((e) => e.classList.toggle('hidden-role', !can('operator')));
}

// ---------------------------------------------------------------- login

async function login(tok) {
  sessionStorage.setItem('childguard-token', tok);
  try {
    state.me = await api('/me');
  } catch (e) {
    sessionStorage.removeItem('childguard-token');
    $('login-error').textContent = e.message === 'unauthorized' ? 'That token is not valid.' : e.message;
    return;
  }
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = state.me.name + ' (' + state.me.role + ')';
  applyRole();
  show(location.hash.slice(1) || 'overview');
}

function logout(msg) {
  sessionStorage.removeItem('childguard-token');
  state.me = null;
  document.querySelectorAll('.view').forEach((v) => { v.hidden = true; });
  $('nav').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
}

function show(view) {
  if (!['overview', 'findings', 'datasets', 'sweeps', 'audit'].includes(view)) view = 'overview';
  state.view = view;
  if (state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-' + view; });
  document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('active', t.dataset.view === view));
  if (location.hash !== '#' + view) history.replaceState(null, '', '#' + view);
  ({ overview: loadOverview, findings: loadFindings, datasets: loadDatasets, sweeps: loadSweeps, audit: loadAudit })[view]().catch(report);
}

function report(e) { if (e.message !== 'unauthorized') { console.error(e); alert(e.message); } }

// ---------------------------------------------------------------- overview

async function loadOverview() {
  const [o, t, v] = await Promise.all([api('/overview'), api('/trend'), api('/violations?status=open&limit=50')]);
  $('t-child').textContent = o.child_findings_open;
  $('t-viol').textContent = o.open_violations;
  $('t-overdue').textContent = o.retention_overdue.records;
  $('t-pending').textContent = o.pending_approvals.sweep_plans + o.pending_approvals.erasures;
  $('t-last').textContent = o.last_run ? '#' + o.last_run.id + ' ' + (o.last_run.trigger || 'scan') + ' ' + o.last_run.status + ' · ' + o.last_run.started_at.replace('T', ' ').slice(0, 19) : 'none yet';
  fill($('child-table').tBodies[0], o.child_pi.map((x) => row([x.dataset, x.category, x.findings, x.values])), 'No open child PI findings.');
  fill($('viol-table').tBodies[0], v.items.map((x) => row([x.kind.replace(/_/g, ' '), x.dataset || '(undeclared)', el('span', x.severity, 'sev-' + x.severity), x.article, x.message])), 'No open violations.');
  drawTrend(t.points);
}

function drawTrend(points) {
  const svg = $('trend');
  const NS = 'http://www.w3.org/2000/svg';
  svg.replaceChildren();
  if (!points.length) { const tx = document.createElementNS(NS, 'text'); tx.setAttribute('x', 10); tx.setAttribute('y', 20); tx.textContent = 'No finished scans yet.'; svg.appendChild(tx); return; }
  const W = 480, H = 180, P = 24;
  const max = Math.max(1, ...points.map((p) => Math.max(p.findings, p.child_findings, p.violations)));
  const x = (i) => P + (points.length === 1 ? (W - 2 * P) / 2 : i * (W - 2 * P) / (points.length - 1));
  const y = (v) => H - P - v * (H - 2 * P) / max;
  for (const [key, cls] of [['findings', 'a'], ['child_findings', 'b'], ['violations', 'c']]) {
    const pl = document.createElementNS(NS, 'polyline');
    pl.setAttribute('class', cls);
    pl.setAttribute('points', points.map((p, i) => x(i) + ',' + y(p[key])).join(' '));
    svg.appendChild(pl);
    points.forEach((p, i) => {
      const c = document.createElementNS(NS, 'circle');
      c.setAttribute('cx', x(i)); c.setAttribute('cy', y(p[key])); c.setAttribute('r', 2.5); c.setAttribute('class', cls);
      const title = document.createElementNS(NS, 'title'); title.textContent = 'run ' + p.run_id + ': ' + p[key] + ' ' + key.replace('_', ' ');
      c.appendChild(title); svg.appendChild(c);
    });
  }
  const lbl = document.createElementNS(NS, 'text'); lbl.setAttribute('x', 2); lbl.setAttribute('y', P - 8); lbl.textContent = String(max); svg.appendChild(lbl);
}

async function scanNow() {
  const b = $('scan-now'); b.disabled = true;
  try {
    const r = await api('/runs', { method: 'POST', body: {} });
    $('scan-status').textContent = 'run #' + r.run_id + ' started';
    const poll = setInterval(async () => {
      try {
        const run = await api('/runs/' + r.run_id);
        if (run.status !== 'running') { clearInterval(poll); $('scan-status').textContent = 'run #' + run.id + ' ' + run.status + ': ' + run.findings + ' findings'; b.disabled = false; if (state.view === 'overview') loadOverview(); }
      } catch (e) { clearInterval(poll); b.disabled = false; }
    }, 700);
  } catch (e) { b.disabled = false; report(e); }
}

// ---------------------------------------------------------------- findings

let filterOptionsLoaded = false;
async function loadFilterOptions() {
  if (filterOptionsLoaded) return;
  const ds = await api('/datasets');
  const sel = $('f-dataset');
  for (const d of ds.items) { const o = el('option', d.name); o.value = d.name; sel.appendChild(o); }
  const cats = ['cn_resident_id', 'cn_mobile', 'cn_landline', 'birth_date', 'age', 'school_name', 'grade_class', 'student_id', 'cn_passport', 'hk_macau_permit', 'tw_permit', 'bank_card', 'email', 'person_name', 'guardian', 'address', 'vulnerable_child'];
  for (const c of cats) { const o = el('option', c); o.value = c; $('f-category').appendChild(o); }
  filterOptionsLoaded = true;
}

function where(f) {
  if (f.table) return f.table + (f.column ? '.' + f.column : '');
  let s = f.path || f.target;
  if (f.line) s += ':' + f.line;
  if (f.field) s += ' (' + f.field + ')';
  return s;
}

async function loadFindings() {
  await loadFilterOptions();
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($('filters'))) if (v) q.set(k, v);
  q.set('page', state.page); q.set('per_page', state.perPage);
  const r = await api('/findings?' + q.toString());
  state.total = r.total;
  const rows = r.items.map((f) => {
    const actions = document.createElement('span');
    if (can('operator')) {
      for (const [st, label] of [['false_positive', 'False positive'], ['accepted_risk', 'Accept risk'], ['confirmed', 'Confirm'], ['open', 'Reopen']]) {
        if (st === f.status) continue;
        const b = el('button', label, 'small'); b.dataset.action = st; b.dataset.finding = f.finding_id;
        b.addEventListener('click', () => triage(f.finding_id, st).catch(report));
        actions.appendChild(b);
      }
    }
    const tr = row([f.category, el('span', f.masked, 'mono'), where(f), f.dataset || '(undeclared)', f.child === null ? '?' : (f.child ? 'yes' : 'no'),
      el('span', f.severity, 'sev-' + f.severity), el('span', f.status.replace('_', ' '), 'status'), actions]);
    tr.dataset.finding = f.finding_id;
    return tr;
  });
  fill($('findings-table').tBodies[0], rows, 'No findings match.');
  const pages = Math.max(1, Math.ceil(r.total / r.per_page));
  $('page-info').textContent = 'page ' + r.page + ' of ' + pages + ' · ' + r.total + ' findings';
  $('prev').disabled = r.page <= 1;
  $('next').disabled = r.page >= pages;
  applyRole();
}

async function triage(id, status) {
  await api('/findings/' + encodeURIComponent(id) + '/triage', { method: 'POST', body: { status } });
  await loadFindings();
}

// ---------------------------------------------------------------- datasets

async function loadDatasets() {
  const r = await api('/datasets');
  const box = $('datasets');
  box.replaceChildren();
  for (const d of r.items) {
    const c = el('div', null, 'card');
    c.dataset.dataset = d.name;
    c.appendChild(el('h3', d.name + (d.undeclared ? ' — found outside every declared dataset' : '')));
    if (!d.undeclared) {
      c.appendChild(el('p', 'Owner: ' + (d.owner || '—') + ' · Purpose: ' + (d.purpose || '—') + ' · Retention: ' + (d.retention || '—') + ' (' + d.disposal + ') · Children\'s data declared: ' + (d.child_data ? 'yes' : 'no'), 'muted'));
      const dec = el('p', 'Declared: ');
      for (const cat of d.declared_categories) dec.appendChild(el('span', cat, 'chip'));
      c.appendChild(dec);
    }
    const t = document.createElement('table');
    t.appendChild(document.createElement('thead')).appendChild(row(['Found category', 'Findings', 'Child findings', 'Declared']));
    const tb = t.appendChild(document.createElement('tbody'));
    fill(tb, d.found.map((f) => row([f.category, f.findings, f.child_findings, f.declared ? el('span', 'yes', 'chip') : el('span', 'NOT DECLARED', 'chip bad')])), 'Nothing found yet.');
    c.appendChild(t);
    box.appendChild(c);
  }
}

// ---------------------------------------------------------------- sweeps

async function loadSweeps() {
  const r = await api('/sweep/plans');
  const rows = r.items.map((p) => {
    const prog = document.createElement('span');
    const bar = document.createElement('progress'); bar.max = Math.max(1, p.planned_rows); bar.value = p.done_rows;
    prog.appendChild(bar); prog.appendChild(el('span', ' ' + p.done_rows + '/' + p.planned_rows, 'progress-text'));
    const actions = document.createElement('span');
    if (p.status === 'planned' && can('approver') && p.created_by !== state.me.name) {
      const a = el('button', 'Approve & run', 'small primary'); a.dataset.action = 'approve';
      a.addEventListener('click', () => act('/sweep/plans/' + p.id + '/approve', { run: true }));
      const j = el('button', 'Reject', 'small'); j.dataset.action = 'reject';
      j.addEventListener('click', () => act('/sweep/plans/' + p.id + '/reject'));
      actions.append(a, j);
    } else if (p.status === 'planned' && can('approver')) {
      actions.appendChild(el('span', 'needs another approver', 'muted'));
    } else if (p.status === 'stopped' && can('operator')) {
      const b = el('button', 'Resume', 'small'); b.addEventListener('click', () => act('/sweep/plans/' + p.id + '/run')); actions.appendChild(b);
    }
    const cutoff = (p.items.find((i) => i.cutoff) || {}).cutoff;
    const tr = row([p.id, p.kind, p.dataset, cutoff ? cutoff.replace('T', ' ').slice(0, 19) : '', p.planned_rows, prog, el('span', p.status, 'st-' + p.status + ' status'), p.created_by, p.approved_by || '', actions]);
    tr.dataset.plan = p.id;
    return tr;
  });
  fill($('plans-table').tBodies[0], rows, 'No sweep plans. Plan one to see what is past retention.');
  const live = r.items.some((p) => p.status === 'running' || p.status === 'approved');
  if (live && !state.pollTimer) state.pollTimer = setInterval(() => { if (state.view === 'sweeps') loadSweeps().catch(report); }, 500);
  if (!live && state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
}

async function act(path, body) {
  try { await api(path, { method: 'POST', body: body || {} }); } catch (e) { report(e); }
  await loadSweeps();
}

async function planSweeps() {
  try {
    const r = await api('/sweep/plans', { method: 'POST', body: {} });
    $('plan-status').textContent = r.items.length ? r.items.length + ' plan(s) created; they wait for approval by someone else.' : 'Nothing is past retention.';
  } catch (e) { report(e); }
  await loadSweeps();
}

// ---------------------------------------------------------------- audit

async function loadAudit() {
  if (!can('approver')) { fill($('audit-table').tBodies[0], [], 'The audit log needs the approver role.'); return; }
  const r = await api('/audit?page=' + state.auditPage + '&per_page=100');
  fill($('audit-table').tBodies[0], r.items.map((a) => row([a.at.replace('T', ' ').slice(0, 19), a.actor, a.role, a.action, a.object, a.outcome, a.detail == null ? '' : (typeof a.detail === 'string' ? a.detail : JSON.stringify(a.detail))])));
  const pages = Math.max(1, Math.ceil(r.total / r.per_page));
  $('a-page-info').textContent = 'page ' + r.page + ' of ' + pages;
  $('a-prev').disabled = r.page <= 1;
  $('a-next').disabled = r.page >= pages;
}

// ---------------------------------------------------------------- wiring

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => { ev.preventDefault(); const t = $('token').value.trim(); $('token').value = ''; if (t) login(t); });
  $('logout').addEventListener('click', () => logout());
  document.querySelectorAll('.tab').forEach((t) => t.addEventListener('click', () => show(t.dataset.view)));
  $('filters').addEventListener('change', () => { state.page = 1; loadFindings().catch(report); });
  $('prev').addEventListener('click', () => { state.page = Math.max(1, state.page - 1); loadFindings().catch(report); });
  $('next').addEventListener('click', () => { state.page += 1; loadFindings().catch(report); });
  $('a-prev').addEventListener('click', () => { state.auditPage = Math.max(1, state.auditPage - 1); loadAudit().catch(report); });
  $('a-next').addEventListener('click', () => { state.auditPage += 1; loadAudit().catch(report); });
  $('scan-now').addEventListener('click', scanNow);
  $('plan-sweeps').addEventListener('click', planSweeps);
  if (token()) login(token()); else logout();
});
