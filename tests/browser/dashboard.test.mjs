// Drives the childguard dashboard in Debian's headless Chromium through
// playwright-core (which never downloads a browser). Started by
// tests/daemon_browser.rs with BASE_URL, TOKEN and SCREENSHOT_DIR set; prints
// `RESULT {json}` for the Rust test to check against the API.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const BASE = process.env.BASE_URL;
const TOKEN = process.env.TOKEN;
const SHOTS = process.env.SCREENSHOT_DIR || 'screenshots';
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
if (!BASE || !TOKEN) throw new Error('BASE_URL and TOKEN are required');
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: EXE,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const problems = [];
const result = {};
try {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  let expect401 = false; // the deliberate wrong token below
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expect401 && m.text().includes('401')) return;
    problems.push('console error: ' + m.text());
  });
  page.on('dialog', async (d) => { problems.push('dialog: ' + d.message()); await d.dismiss(); });
  // Offline: the dashboard must not reach anything but the daemon.
  await page.route('**/*', (route) => (route.request().url().startsWith(BASE) ? route.continue() : (problems.push('external request: ' + route.request().url()), route.abort())));
  // page.waitForFunction evaluates strings, which the dashboard's CSP forbids
  // (as it should); poll with page.evaluate instead, keeping CSP enforced.
  const waitFor = async (fn, arg, ms = 30000) => {
    const t0 = Date.now();
    for (;;) {
      if (await page.evaluate(fn, arg)) return;
      if (Date.now() - t0 > ms) throw new Error('timed out waiting for ' + fn.toString().slice(0, 120));
      await page.waitForTimeout(50);
    }
  };
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });

  // 1. A wrong token is refused; the right one signs in.
  await page.goto(BASE + '/');
  expect401 = true;
  await page.fill('#token', 'wrong-token');
  await page.click('#login-button');
  await waitFor(() => document.getElementById('login-error').textContent.includes('not valid'));
  expect401 = false;
  await page.fill('#token', TOKEN);
  await page.click('#login-button');
  await page.waitForSelector('#nav:not([hidden])');
  await waitFor(() => /^\d+$/.test(document.getElementById('t-child').textContent) && document.querySelectorAll('#child-table tbody tr').length > 0);
  await page.waitForSelector('#trend circle', { state: 'attached' });
  result.who = await page.textContent('#who-name');
  result.overview_child = Number(await page.textContent('#t-child'));
  result.overview_pending = Number(await page.textContent('#t-pending'));
  result.token_in_storage = await page.evaluate(() => sessionStorage.getItem('childguard-token') !== null);
  result.cookies = (await ctx.cookies()).length;
  await shot('01-overview');

  // 2. Filter findings: children's resident IDs.
  await page.click('button[data-view=findings]');
  await page.waitForSelector('#findings-table tbody tr[data-finding]');
  await page.selectOption('#f-category', 'cn_resident_id');
  await page.selectOption('#f-child', 'true');
  await waitFor(() => {
    const rows = [...document.querySelectorAll('#findings-table tbody tr[data-finding]')];
    return rows.length > 0 && rows.every((r) => r.cells[0].textContent === 'cn_resident_id' && r.cells[4].textContent === 'yes');
  });
  result.filtered_rows = await page.locator('#findings-table tbody tr[data-finding]').count();
  result.page_info = await page.textContent('#page-info');
  await shot('02-findings-filtered');

  // 3. Mark the first one a false positive: it leaves the "open" list.
  const first = page.locator('#findings-table tbody tr[data-finding]').first();
  const fid = await first.getAttribute('data-finding');
  result.false_positive = fid;
  await first.locator('button[data-action=false_positive]').click();
  await waitFor((id) => !document.querySelector(`#findings-table tbody tr[data-finding="${id}"]`), fid);
  await page.selectOption('#f-status', 'false_positive');
  await page.waitForSelector(`#findings-table tbody tr[data-finding="${fid}"]`);
  result.fp_status_text = await page.textContent(`#findings-table tbody tr[data-finding="${fid}"] .status`);
  await shot('03-false-positive');

  // 4. Datasets: declared vs found, with the undeclared export.
  await page.click('button[data-view=datasets]');
  await page.waitForSelector('#datasets .card[data-dataset="(undeclared)"]');
  result.not_declared_chips = await page.locator('#datasets .chip.bad').count();
  await shot('04-datasets');

  // 5. Approve a pending sweep plan and watch it complete (live progress).
  await page.click('button[data-view=sweeps]');
  const planRow = page.locator('#plans-table tbody tr[data-plan]').filter({ has: page.locator('button[data-action=approve]') }).first();
  await planRow.waitFor();
  const pid = await planRow.getAttribute('data-plan');
  result.plan = pid;
  await planRow.locator('button[data-action=approve]').click();
  const sel = `#plans-table tbody tr[data-plan="${pid}"] .status`;
  const seen = new Set();
  const t0 = Date.now();
  while (Date.now() - t0 < 60000) {
    const st = await page.textContent(sel).catch(() => null);
    if (st) seen.add(st);
    if (st === 'done' || st === 'failed' || st === 'verification_failed') break;
    await page.waitForTimeout(100);
  }
  result.plan_states_seen = [...seen];
  result.plan_progress = await page.textContent(`#plans-table tbody tr[data-plan="${pid}"] .progress-text`);
  await shot('05-sweep-completed');

  // 6. The audit log shows what was done.
  await page.click('button[data-view=audit]');
  await page.waitForSelector('#audit-table tbody tr');
  result.audit_has_approve = await page.locator('#audit-table tbody td', { hasText: 'sweep.approve' }).count() > 0;
  result.audit_has_triage = await page.locator('#audit-table tbody td', { hasText: 'finding.triage' }).count() > 0;
  await shot('06-audit');

  // 7. Signing out forgets the token.
  await page.click('#logout');
  result.token_after_logout = await page.evaluate(() => sessionStorage.getItem('childguard-token'));
} finally {
  await browser.close();
}
result.problems = problems;
console.log('RESULT ' + JSON.stringify(result));
