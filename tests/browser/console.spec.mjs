#!/usr/bin/env node
// End-to-end test of warrant's web console in headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core. A plain Node script (node:assert, no test runner): it is started
// by crates/cli/tests/it/browser.rs, which runs the server, seeds the scenario over the API
// and passes the URL, the humans' credentials and the ids in environment variables (see
// `need` below), then checks the audit log over the API. One line per step on stdout; a
// full-page screenshot per step in $ARTIFACTS_DIR (<nn>-<step>.png, <nn>-<step>-FAILED.png
// when a step fails). Exits non-zero on the first failure.
//
// Run by hand against a seeded server: export the variables, then `node console.spec.mjs`.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const need = (k) => {
  const v = process.env[k];
  if (!v) {
    console.error(`missing environment variable ${k}`);
    process.exit(2);
  }
  return v;
};
const E = Object.fromEntries(
  [
    'WARRANT_URL', 'ARTIFACTS_DIR',
    'APPROVER_USER', 'APPROVER_DISPLAY', 'APPROVER_PASSWORD',
    'ADMIN_USER', 'ADMIN_DISPLAY', 'ADMIN_PASSWORD',
    'AUDITOR_USER', 'AUDITOR_DISPLAY', 'AUDITOR_PASSWORD', 'ADMIN_API_TOKEN',
    'CAPABILITY', 'OWNER', 'TIER3_ID', 'TIER3_OTHER_ID', 'TIER2_ID',
    'IDENTITY_ID', 'IDENTITY_NAME', 'APPROVE_WHY', 'TICKET', 'OVERRIDE_WHY', 'KILL_WHY',
  ].map((k) => [k, need(k)]),
);
const base = E.WARRANT_URL.replace(/\/$/, '');
const ui = (p) => `${base}/ui${p}`;
fs.mkdirSync(E.ARTIFACTS_DIR, { recursive: true });

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---------------------------------------------------------------------------------------
// Helpers.

/** Polls `fn` until it returns a truthy value (and does not throw); fails after `ms`. */
async function eventually(fn, what, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = new Error(`not yet: ${what}`);
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} (after ${ms} ms): ${last?.message}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warrant-browser-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1280, height: 860 },
  locale: 'en-US',
  timezoneId: 'UTC',
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(8000);
page.setDefaultNavigationTimeout(10000);

// Script errors and CSP violations fail the run; failed resource loads are reported.
const pageErrors = [];
const failedLoads = [];
page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  const t = m.text();
  if (t.startsWith('Failed to load resource')) return; // the intended 401/403 pages
  pageErrors.push(`${page.url()}: console error: ${t}`);
});
page.on('response', (r) => {
  if (r.status() >= 400) failedLoads.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
});

let stepNo = 0;
let note = '';
async function step(name, fn) {
  stepNo += 1;
  const id = `${String(stepNo).padStart(2, '0')}-${name}`;
  const t0 = Date.now();
  note = '';
  try {
    await fn();
  } catch (e) {
    await page
      .screenshot({ path: path.join(E.ARTIFACTS_DIR, `${id}-FAILED.png`), fullPage: true })
      .catch(() => {});
    console.log(`FAIL ${id} at ${page.url()}`);
    throw e;
  }
  await page.screenshot({ path: path.join(E.ARTIFACTS_DIR, `${id}.png`), fullPage: true });
  console.log(`ok   ${id} (${Date.now() - t0} ms)${note ? ` — ${note}` : ''}`);
}

const main = () => page.locator('main');
const text = async (loc) => (await loc.innerText()).replace(/\s+/g, ' ').trim();
/** The <dd> after the <dt> with exactly `label` (inside `scope`). */
const dd = (scope, label) =>
  scope.locator('dt', { hasText: new RegExp(`^${label}$`) }).locator('xpath=following-sibling::dd[1]');
const stateBadge = () => page.locator('p.meta .state');

async function signIn(user, password, display, role) {
  await page.goto(ui('/login'));
  await page.getByLabel('Username', { exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith('/ui/login')),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  assert.equal(await text(page.locator('header .who .user')), display);
  const roles = await page.getByLabel('your roles').innerText();
  assert.ok(roles.includes(role), `${user} holds ${role}: ${roles}`);
}

async function signOut() {
  await Promise.all([
    page.waitForURL(/\/ui\/login/),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  // Signed out for real: the console sends us back to sign in.
  await page.goto(ui('/'));
  await page.waitForURL(/\/ui\/login\?next=/);
}

/** Submits a form with `button` and waits for the POST's response (the page then loads). */
async function submit(button, pathSuffix) {
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith(pathSuffix)),
    button.click(),
  ]);
  await page.waitForLoadState('load');
  return resp;
}

/** Every interactive element on the page has an accessible name (Chromium's own
 * accessibility tree, via Playwright's ARIA snapshot). Returns the snapshot. */
async function allControlsNamed(scope) {
  const snap = await scope.ariaSnapshot();
  const roles = ['textbox', 'combobox', 'button', 'checkbox', 'radio', 'searchbox', 'spinbutton', 'listbox', 'link'];
  const unnamed = snap
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => roles.some((r) => l === `- ${r}` || l.startsWith(`- ${r}:`) || l.startsWith(`- ${r} [`)));
  assert.deepEqual(unnamed, [], `controls without an accessible name:\n${snap}`);
  return snap;
}

// ---------------------------------------------------------------------------------------
// The scenario.

const started = Date.now();
try {
  // 1. The approver (also the named reviewer of the capability) signs in.
  await step('sign-in-refused', async () => {
    await page.goto(ui('/'));
    await page.waitForURL(/\/ui\/login\?next=%2Fui%2F|\/ui\/login\?next=\/ui\//);
    await page.getByLabel('Username', { exact: true }).fill(E.APPROVER_USER);
    await page.getByLabel('Password', { exact: true }).fill('not-the-right-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
    assert.match(page.url(), /\/ui\/login/);
    note = 'wrong password refused';
  });
  await step('sign-in', async () => {
    await signIn(E.APPROVER_USER, E.APPROVER_PASSWORD, E.APPROVER_DISPLAY, 'approver');
    assert.equal(new URL(page.url()).pathname, '/ui/');
    note = `signed in as ${E.APPROVER_DISPLAY} (approver)`;
  });

  // 2. The approval inbox lists the Tier 3 proposal; open it and decide.
  await step('inbox', async () => {
    await page.getByRole('heading', { name: 'Approval inbox' }).waitFor();
    const row = page
      .locator('table[data-list] tbody tr')
      .filter({ has: page.locator(`a[href="/ui/proposals/${E.TIER3_ID}"]`) });
    const cells = (await row.locator('td').allInnerTexts()).map((s) => s.replace(/\s+/g, ' ').trim());
    assert.equal(cells.length, 6, `columns: ${cells}`);
    assert.match(cells[0], /^revoke entitlement · .*entitlement: s3:bucket-a:read/);
    assert.equal(cells[1], `${E.CAPABILITY} · ${E.OWNER}`);
    assert.equal(cells[2], 'Tier 3');
    assert.equal(cells[3], '1 identity');
    assert.equal(cells[4], '93%');
    assert.match(cells[5], /^6d 23h$/);
    const headers = await page.locator('table[data-list] thead th').allInnerTexts();
    assert.deepEqual(headers, ['Change', 'Capability · owner', 'Tier', 'Blast radius', 'Confidence', 'Time left']);
    // The Tier 2 change is not waiting for approval (it was applied; it is under review).
    assert.equal(await page.locator(`a[href="/ui/proposals/${E.TIER2_ID}"]`).count(), 0);
    note = `${await page.locator('table[data-list] tbody tr').count()} pending, ${E.TIER3_ID} listed`;
  });

  await step('proposal', async () => {
    await Promise.all([
      page.waitForURL(ui(`/proposals/${E.TIER3_ID}`)),
      page.locator(`a[href="/ui/proposals/${E.TIER3_ID}"]`).click(),
    ]);
    assert.match(await text(page.getByRole('heading', { level: 1 })), /^revoke entitlement/);
    assert.equal(await text(stateBadge()), 'pending approval');
    const who = page.locator('section', { has: page.getByRole('heading', { name: 'Who proposes' }) });
    assert.equal(await text(dd(who, 'AI capability')), E.CAPABILITY);
    assert.equal(await text(dd(who, 'Accountable owner')), E.OWNER);
    assert.equal(await text(dd(who, 'Model confidence')), '93%');
    assert.match(await text(who.locator('.rationale')), /s3:bucket-a:read has not been used .* 60 days/);
    const risk = page.locator('section', { has: page.getByRole('heading', { name: /^Risk/ }) });
    assert.equal(await text(dd(risk, 'Blast radius')), '1 identity, 1 resource');
    assert.equal(await text(dd(risk, 'Data classification')), 'confidential');
    assert.equal(await risk.locator(`a[href="/ui/identities/${E.IDENTITY_ID}"]`).count(), 1, 'affected identity listed');
    const tier = page.locator('section', { has: page.getByRole('heading', { name: 'Why Tier 3' }) });
    const tierText = await text(tier);
    assert.ok(tierText.includes('policy tier3-confidential-data → Tier 3'), tierText);
    assert.ok(tierText.includes('Approvals: 0 of 1'), tierText);
    const chain = page.locator('section', { has: page.getByRole('heading', { name: /^Chain/ }) });
    assert.equal(await chain.locator('ol.chain > li').count(), 3, 'three proposals in the chain');
    assert.equal(await chain.locator('li[aria-current="step"]').count(), 1);
    note = 'rationale, confidence, blast radius, tier policy, 3-step chain shown';
  });

  await step('approve-too-short', async () => {
    let posts = 0;
    const count = (r) => { if (r.method() === 'POST') posts += 1; };
    page.on('request', count);
    const before = page.url();
    await page.getByLabel('Change ticket').fill(E.TICKET);
    await page.getByLabel('Business justification').fill('looks fine');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.waitForTimeout(400);
    page.off('request', count);
    assert.equal(posts, 0, 'the browser must not submit a justification under 20 characters');
    assert.equal(page.url(), before);
    const v = await page.getByLabel('Business justification').evaluate((el) => ({
      tooShort: el.validity.tooShort, message: el.validationMessage,
    }));
    assert.equal(v.tooShort, true);
    assert.equal(await text(stateBadge()), 'pending approval');
    note = `blocked by the browser: "${v.message}"`;
  });

  await step('approved', async () => {
    await page.getByLabel('Business justification').fill(E.APPROVE_WHY);
    const resp = await submit(page.getByRole('button', { name: 'Approve' }), `/proposals/${E.TIER3_ID}/approve`);
    assert.equal(resp.status(), 303);
    await eventually(async () => (await text(stateBadge())) === 'executed', 'state executed');
    assert.equal(new URL(page.url()).pathname, `/ui/proposals/${E.TIER3_ID}`);
    const approval = await text(page.locator('p.approval'));
    assert.equal(approval, `Approved by ${E.APPROVER_USER} — ${E.APPROVE_WHY} (${E.TICKET})`);
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0, 'no decision form any more');
    note = approval;
  });

  // 3. Tier 2 reviews: a live countdown, and the override.
  await step('reviews', async () => {
    await Promise.all([
      page.waitForURL(ui('/reviews')),
      page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tier 2 reviews' }).click(),
    ]);
    const card = page.locator('article.review').filter({ has: page.locator(`a[href="/ui/proposals/${E.TIER2_ID}"]`) });
    const meta = await text(card.locator('p.meta'));
    assert.ok(meta.includes(`reviewer ${E.APPROVER_USER}`), meta);
    assert.ok(meta.includes('Tier 2'), meta);
    const timer = card.locator('.timer');
    const first = await text(timer);
    assert.match(first, /^1[45]m \d{1,2}s$/, `countdown of a 15-minute window: ${first}`);
    const t0 = Date.now();
    const next = await eventually(async () => {
      const t = await text(timer);
      return t !== first && t;
    }, 'the countdown ticks', 2500);
    assert.ok(await card.getByRole('button', { name: 'Override' }).isVisible());
    note = `countdown ${first} → ${next} in ${Date.now() - t0} ms`;
  });

  await step('overridden', async () => {
    const card = page.locator('article.review').filter({ has: page.locator(`a[href="/ui/proposals/${E.TIER2_ID}"]`) });
    await card.getByLabel('Why override (undo) this change').fill(E.OVERRIDE_WHY);
    await Promise.all([
      page.waitForURL(ui(`/proposals/${E.TIER2_ID}`)),
      card.getByRole('button', { name: 'Override' }).click(),
    ]);
    await eventually(async () => (await text(stateBadge())) === 'overridden', 'state overridden');
    assert.equal(await page.getByRole('button', { name: 'Override' }).count(), 0);
    note = 'state overridden (change reverted)';
  });

  // 4. The admin engages the affected identity's kill switch.
  await step('identity-as-admin', async () => {
    await signOut();
    await signIn(E.ADMIN_USER, E.ADMIN_PASSWORD, E.ADMIN_DISPLAY, 'admin');
    await Promise.all([
      page.waitForURL(/\/ui\/identities/),
      page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Identities' }).click(),
    ]);
    await page.getByRole('searchbox', { name: 'Search' }).fill(E.IDENTITY_NAME);
    await Promise.all([page.waitForURL(/[?&]q=/), page.getByRole('button', { name: 'Filter' }).click()]);
    assert.equal(await page.locator('table[data-list] tbody tr').count(), 1);
    await Promise.all([
      page.waitForURL(ui(`/identities/${E.IDENTITY_ID}`)),
      page.getByRole('link', { name: E.IDENTITY_NAME, exact: true }).click(),
    ]);
    assert.match(await text(page.getByRole('heading', { level: 1 })), new RegExp(`^${E.IDENTITY_NAME} active$`));
    assert.equal(await page.getByText('Kill switch engaged').count(), 0);
    note = `signed in as ${E.ADMIN_DISPLAY}; ${E.IDENTITY_NAME} is active`;
  });

  await step('kill-switch-engaged', async () => {
    const zone = page.locator('section', { has: page.getByRole('heading', { name: 'Kill switch' }) });
    await zone.getByLabel('Reason').fill(E.KILL_WHY);
    const resp = await submit(zone.getByRole('button', { name: 'Engage kill switch' }), `/identities/${E.IDENTITY_ID}/kill`);
    assert.equal(resp.status(), 303);
    const status = page.getByRole('status').filter({ hasText: 'Kill switch engaged' });
    await status.waitFor();
    assert.equal(await text(status), `Kill switch engaged: ${E.KILL_WHY}`);
    note = 'page shows "Kill switch engaged"';
  });

  // 5. The audit explorer finds what the humans did, verified against a signed checkpoint.
  await step('audit-approver', async () => {
    const cp = await fetch(`${base}/v1/audit/checkpoints`, {
      method: 'POST',
      headers: { authorization: `Bearer ${E.ADMIN_API_TOKEN}` },
    });
    const cpBody = await cp.text();
    assert.equal(cp.status, 200, `checkpoint: ${cpBody}`);
    const { size } = JSON.parse(cpBody);
    await Promise.all([
      page.waitForURL(ui('/audit')),
      page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click(),
    ]);
    assert.match(await text(page.locator('p.lede')), /signature valid, log consistent/);
    await page.getByLabel('Actor').fill(`human:${E.APPROVER_USER}`);
    await Promise.all([page.waitForURL(/[?&]actor=/), page.getByRole('button', { name: 'Filter' }).click()]);
    const rows = await auditRows();
    assert.ok(rows.every((r) => r.actor === `human:${E.APPROVER_USER}`), 'filtered by actor');
    const approve = rows.find((r) => r.kind === 'human.decision' && r.subject === `proposal:${E.TIER3_ID}`);
    assert.ok(approve, `approval record: ${JSON.stringify(rows)}`);
    assert.match(approve.payload, /"action": "approve"/);
    assert.ok(approve.payload.includes(`"ticket": "${E.TICKET}"`), approve.payload);
    const ovr = rows.find((r) => r.kind === 'human.decision' && r.subject === `proposal:${E.TIER2_ID}`);
    assert.ok(ovr, 'override record');
    assert.match(ovr.payload, /"action": "override"/);
    const revert = rows.find((r) => r.kind === 'execution' && r.subject === `proposal:${E.TIER2_ID}`);
    assert.ok(revert && revert.payload.includes('"reverted"'), 'the revert is recorded under the approver');
    for (const r of [approve, ovr, revert]) {
      assert.equal(r.verification, `verified (checkpoint ${size})`, `#${r.seq} ${r.kind}`);
    }
    note = `${rows.length} records of human:${E.APPROVER_USER}; approve #${approve.seq}, override #${ovr.seq} verified (checkpoint ${size})`;
  });

  await step('audit-admin', async () => {
    await page.getByLabel('Actor').fill(`human:${E.ADMIN_USER}`);
    await page.getByLabel('Kind').selectOption('killswitch.engaged');
    await Promise.all([page.waitForURL(/kind=killswitch/), page.getByRole('button', { name: 'Filter' }).click()]);
    const rows = await auditRows();
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.equal(rows[0].actor, `human:${E.ADMIN_USER}`);
    assert.ok(rows[0].payload.includes(E.KILL_WHY), rows[0].payload);
    assert.match(rows[0].verification, /^verified \(checkpoint \d+\)$/);
    note = `killswitch.engaged #${rows[0].seq} by human:${E.ADMIN_USER}, ${rows[0].verification}`;
  });

  // 6. Accessibility and keyboard smoke.
  await step('accessible-names', async () => {
    await page.goto(ui(`/proposals/${E.TIER3_OTHER_ID}`));
    assert.equal(await text(stateBadge()), 'pending approval');
    // The admin is not an approver (separation of duties): no decision form, a note.
    // (The approver's form controls were found by their labels in steps 5 and 6.)
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0);
    assert.match(await text(page.getByRole('note')), /approver role/);
    const snap = await allControlsNamed(page.locator('body'));
    const controls = snap.split('\n').filter((l) => /- (textbox|button|combobox|link)/.test(l.trim())).length;
    note = `${controls} controls and links, all named`;
  });

  await step('keyboard', async () => {
    await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
    await page.keyboard.press('g');
    await Promise.all([page.waitForURL(ui('/identities')), page.keyboard.press('i')]);
    await page.keyboard.press('/');
    const focused = await page.evaluate(() => document.activeElement?.id);
    assert.equal(focused, 'q', 'the search box has the focus');
    // Typing in the search box is typing, not shortcuts.
    await page.keyboard.type('gi');
    await page.waitForTimeout(150);
    assert.equal(page.url(), ui('/identities'));
    assert.equal(await page.getByRole('searchbox', { name: 'Search' }).inputValue(), 'gi');
    // j selects the first row, Enter opens it.
    await page.getByRole('searchbox', { name: 'Search' }).fill('');
    await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
    await page.keyboard.press('j');
    assert.equal(await page.locator('table[data-list] tbody tr.sel').count(), 1);
    await Promise.all([page.waitForURL(/\/ui\/identities\/[^/]+$/), page.keyboard.press('Enter')]);
    note = 'g i → Identities, / → search box, j + Enter → first identity';
  });

  // 7. An auditor reads the audit log but may not approve.
  await step('auditor-audit', async () => {
    await signOut();
    await signIn(E.AUDITOR_USER, E.AUDITOR_PASSWORD, E.AUDITOR_DISPLAY, 'auditor');
    await page.goto(ui('/audit'));
    await page.getByRole('heading', { name: 'Audit explorer' }).waitFor();
    const rows = await page.locator('table.audit tbody tr').count();
    assert.ok(rows > 10, `the auditor sees the log (${rows} rows)`);
    note = `${rows} records visible`;
  });

  await step('auditor-approve-refused', async () => {
    await page.goto(ui(`/proposals/${E.TIER3_OTHER_ID}`));
    // The console offers an auditor no decision form, only a note saying why.
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0, 'no Approve button for an auditor');
    assert.match(await text(page.getByRole('note')), /approver role/);
    // Posting the form anyway (with the session's valid anti-CSRF token, from the
    // sign-out form) is refused by the same check as the API.
    const csrf = await page.locator('form[action="/ui/logout"] input[name="_csrf"]').inputValue();
    assert.ok(csrf.length >= 16, 'the session has an anti-CSRF token');
    const resp = await page.request.post(ui(`/proposals/${E.TIER3_OTHER_ID}/approve`), {
      form: { _csrf: csrf, justification: 'Auditor trying to approve, which must be refused', ticket: 'CHG-9999' },
      headers: { origin: base },
      maxRedirects: 0,
    });
    assert.equal(resp.status(), 403);
    const body = await resp.text();
    assert.match(body, /Not allowed/);
    const why = (body.match(/role="alert">([\s\S]*?)<\/p>/) || [])[1] || body;
    assert.match(why, /approver/, why);
    await page.setContent(body);
    // A forged form (no valid anti-CSRF token) is refused before any permission check.
    const forged = await page.request.post(ui(`/proposals/${E.TIER3_OTHER_ID}/approve`), {
      form: { _csrf: 'forged', justification: 'x'.repeat(30), ticket: 'CHG-1' },
      maxRedirects: 0,
    });
    assert.equal(forged.status(), 403);
    assert.match(await forged.text(), /anti-forgery token/);
    note = `403 "Not allowed": ${why}`;
  });

  await step('auditor-proposal-unchanged', async () => {
    await page.goto(ui(`/proposals/${E.TIER3_OTHER_ID}`));
    assert.equal(await text(stateBadge()), 'pending approval');
    assert.ok((await text(page.locator('main'))).includes('Approvals: 0 of 1'));
    note = 'still pending, no approval';
  });

  assert.deepEqual(pageErrors, [], 'script errors or CSP violations in the console');
  console.log(`done: ${stepNo} steps in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${E.ARTIFACTS_DIR}`);
  const unexpected = failedLoads.filter((l) => !/^(401|403) POST \/ui\/(login|proposals\/)/.test(l));
  if (unexpected.length) console.log(`note: responses >= 400: ${[...new Set(unexpected)].join(', ')}`);
} catch (e) {
  console.error(e?.stack ?? String(e));
  if (pageErrors.length) console.error(`page errors:\n  ${pageErrors.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

/** The audit table's rows on the current page. */
async function auditRows() {
  return page.locator('table.audit tbody tr').evaluateAll((trs) =>
    trs.map((tr) => {
      const td = [...tr.querySelectorAll('td')];
      return {
        seq: td[0].textContent.trim(),
        time: td[1].textContent.trim(),
        kind: td[2].textContent.trim(),
        actor: td[3].textContent.trim(),
        subject: td[4].textContent.trim(),
        verification: td[5].textContent.trim(),
        payload: td[6].querySelector('pre')?.textContent ?? '',
      };
    }),
  );
}
