// Drives the support console in headless Chromium, as support staff would
// (tests/it/console_browser.rs starts the ledger, the sandbox and the worker, then runs this).
//
// Environment: CONSOLE_URL, SUPPORT_TOKEN, TENANT, INVOICE_ID, INVOICE_NUMBER, OTHER_INVOICE_ID,
// EXPECTED_CAUSE, EXPECTED_ADVICE, EXPECTED_TOTAL, EXPECTED_ISSUE_DATE, EXPECTED_TAX_ID, ADMIN_TOKEN, AUDITOR_TOKEN, AUTHORIZE_URL, SCREENSHOT_DIR, USER_DATA_DIR, CHROMIUM.
//
// Protocol: a line `ACTION <name>` on stdout asks the test to change the world (`fix_bling`:
// add the missing situação to the shop's Bling account; `revoke`: the shop revokes access and
// bills more invoices, which park); the test answers `go` on stdin once done. The last line
// is a JSON summary. Any failed expectation exits non-zero with the reason on stderr.
'use strict';

const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error('missing environment variable ' + name);
  return v;
};

const BASE = env('CONSOLE_URL');
const TOKEN = env('SUPPORT_TOKEN');
const TENANT = env('TENANT');
const INVOICE = env('INVOICE_ID');
const NUMBER = env('INVOICE_NUMBER');
const OTHER = env('OTHER_INVOICE_ID');
const CAUSE = env('EXPECTED_CAUSE');
const ADVICE = env('EXPECTED_ADVICE');
const TOTAL = env('EXPECTED_TOTAL');
const ISSUE_DATE = env('EXPECTED_ISSUE_DATE');
const TAX_ID = env('EXPECTED_TAX_ID');
const AUTHORIZE_URL = env('AUTHORIZE_URL');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const AUDITOR_TOKEN = env('AUDITOR_TOKEN');
const SHOTS = env('SCREENSHOT_DIR');
const USER_DATA_DIR = env('USER_DATA_DIR');
const CHROMIUM = env('CHROMIUM');

// Never hang CI: the whole script has 60 s.
setTimeout(() => {
  console.error('drive.js: timed out after 60 s');
  process.exit(3);
}, 60_000).unref();

function check(condition, message) {
  if (!condition) throw new Error('expectation failed: ' + message);
}

const stdinLines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdinLines.once('line', resolve));

async function action(name) {
  console.log('ACTION ' + name);
  const answer = await nextLine();
  check(answer.trim() === 'go', 'the test did ' + name + ' (answered ' + answer + ')');
}

async function text(page, selector) {
  return ((await page.locator(selector).textContent()) || '').trim();
}

// Intl separates "R$" from the figure with a no-break space; compare with plain spaces.
const spaces = (s) => s.replace(/\s/g, ' ');

// What São Paulo's clock read at `iso` (UTC−03:00 all year since 2019), as dd/mm/yyyy HH:MM:
// computed here without Intl, to check the page's own formatting.
function saoPaulo(iso) {
  const d = new Date(new Date(iso).getTime() - 3 * 3600 * 1000);
  const two = (n) => String(n).padStart(2, '0');
  return two(d.getUTCDate()) + '/' + two(d.getUTCMonth() + 1) + '/' + d.getUTCFullYear() + ' ' +
    two(d.getUTCHours()) + ':' + two(d.getUTCMinutes());
}

async function main() {
  const context = await chromium.launchPersistentContext(USER_DATA_DIR, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    locale: 'en-GB',
    timezoneId: 'America/Sao_Paulo',
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // The deliberate 401 of the wrong token is logged by Chromium as a failed resource.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push('console error: ' + m.text());
    }
  });
  const steps = [];
  const step = (name) => steps.push(name);

  // 1. The sign-in form; a wrong token is refused with a clear message.
  const response = await page.goto(BASE + '/');
  check(response.status() === 200, 'the page answers 200');
  await page.locator('#login-view').waitFor({ state: 'visible' });
  await page.getByLabel('Support token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error').waitFor({ state: 'visible' });
  const refused = await text(page, '#login-error');
  check(refused.includes('401') && refused.includes('not accepted'), 'the wrong token is refused: ' + refused);
  // A real token without the support role (an auditor's) is told so.
  await page.getByLabel('Support token').fill(AUDITOR_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error', { hasText: '403' }).waitFor();
  check((await text(page, '#login-error')).includes('may not use the support console'), 'the auditor is refused');
  check(await page.locator('#app').isHidden(), 'nothing is shown without a support token');
  step('wrong token and wrong role refused');

  // 2. The right token: a token scoped to one shop goes straight to that shop.
  await page.getByLabel('Support token').fill(TOKEN);
  await page.getByLabel('Support token').press('Enter');
  await page.locator('#tenant-view').waitFor({ state: 'visible' });
  check((await text(page, '#tenant-title')) === TENANT, 'the shop is shown');
  check(await page.evaluate(() => sessionStorage.getItem('bling-ledger.support-token')) === TOKEN,
    'the token is kept in sessionStorage');
  await page.locator('#connection-state', { hasText: 'connected' }).waitFor();
  const expiresRow = page.locator('#connection-details dt', { hasText: 'Access token expires in' });
  check(await expiresRow.count() === 1, 'the connection shows when its access token expires');
  step('signed in; connection connected');

  // 3. Failures grouped by cause: both failed invoices under the same cause.
  const group = page.locator(`#failures-body tr[data-cause="${CAUSE}"]`);
  await group.waitFor();
  check((await text(page, `#failures-body tr[data-cause="${CAUSE}"] [data-testid="failure-invoices"]`)) === '2',
    'the cause counts two invoices');
  check((await page.locator('#failures-body tr').count()) === 1, 'one cause only');
  const headline = await text(page, '#failures-headline');
  check(headline.includes('Bling account set-up missing'), 'the headline names the main cause: ' + headline);
  step('failures grouped by cause');

  // 4. The invoice list, filtered by state, then searched by number.
  await page.getByLabel('Sync state').selectOption('failed');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator(`#invoices-body tr[data-invoice="${OTHER}"]`).waitFor();
  await page.locator(`#invoices-body tr[data-invoice="${INVOICE}"][data-state="failed"]`).waitFor();
  check((await page.locator('#invoices-body tr').count()) === 2, 'two failed invoices listed');
  await page.getByLabel('Invoice number or customer CPF/CNPJ').fill(NUMBER);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction((other) => !document.querySelector(`#invoices-body tr[data-invoice="${other}"]`), OTHER);
  await page.locator(`#invoices-body tr[data-invoice="${INVOICE}"]`).waitFor();
  check((await page.locator('#invoices-body tr').count()) === 1, 'the search finds one invoice');
  check(spaces(await text(page, `#invoices-body tr[data-invoice="${INVOICE}"] [data-testid="invoice-total"]`)) === TOTAL,
    'the list shows the total in reais');
  check(page.url().includes('state=failed') && page.url().includes('q=' + encodeURIComponent(NUMBER)),
    'the filters are in the address: ' + page.url());
  await page.screenshot({ path: path.join(SHOTS, '1-tenant.png'), fullPage: true });
  step('invoice list filtered and searched');

  // 5. The failed invoice: its cause, Bling's message, what to do, and its timeline.
  await page.getByRole('link', { name: NUMBER, exact: true }).click();
  await page.locator('#invoice-view').waitFor({ state: 'visible' });
  await page.locator('#invoice-state[data-state="failed"]').waitFor();
  await page.locator('#invoice-cause').waitFor({ state: 'visible' });
  check((await text(page, '[data-testid="cause-kind"]')) === CAUSE, 'the cause is shown');
  check((await text(page, '[data-testid="advice"]')) === ADVICE, 'the advice is shown');
  const said = await text(page, '[data-testid="cause-message"]');
  check(said.includes('Aguardando NF-e') && said.includes('To fix'),
    'what the account lacks and what to configure are shown: ' + said);
  const events = await page.locator('#timeline li').evaluateAll((items) => items.map((i) => i.dataset.event));
  for (const e of ['InvoiceBilled', 'SyncFailed']) check(events.includes(e), 'the timeline has ' + e + ': ' + events);
  const failure = page.locator('#timeline li[data-event="SyncFailed"]').first();
  check((await failure.locator('.conn').textContent()).includes('connected'),
    'the failure shows the connection state of its moment');
  check((await failure.locator('table.calls tbody tr').count()) >= 1, 'the failure lists its Bling calls');
  check((await failure.textContent()).includes(ADVICE), 'the failure in the timeline says what to do');
  check((await text(page, '#customer-facts')).includes('Maria'), 'the customer is shown');
  // Brazilian formats, whatever the browser's language (en-GB here): money, date, document.
  check(spaces(await text(page, '[data-testid="total"]')) === TOTAL, 'the total reads ' + TOTAL + ': ' +
    (await text(page, '[data-testid="total"]')));
  check((await text(page, '[data-testid="issue-date"]')) === ISSUE_DATE, 'the issue date reads ' + ISSUE_DATE);
  const billed = page.locator('[data-testid="billed-at"] time');
  const billedIso = await billed.getAttribute('datetime');
  const billedText = ((await billed.textContent()) || '').trim();
  check(/^\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}$/.test(billedText) && billedText === saoPaulo(billedIso),
    'the billing time reads in São Paulo time: ' + billedText + ' for ' + billedIso);
  await page.locator('[data-testid="tax-id"]').waitFor();
  check((await text(page, '[data-testid="tax-id"]')) === TAX_ID, 'the CPF reads ' + TAX_ID + ': ' +
    (await text(page, '[data-testid="tax-id"]')));
  await page.screenshot({ path: path.join(SHOTS, '2-invoice-failed.png'), fullPage: true });
  step('failed invoice: cause, advice, timeline');

  // 6. Support fixes Bling (the test adds the situação), then reprocesses.
  await action('fix_bling');
  await page.getByRole('button', { name: 'Reprocess' }).click();
  await page.locator('#invoice-state[data-state="synced"]').waitFor({ timeout: 30_000 });
  await page.locator('#reprocess-status', { hasText: 'Done: the invoice is synced' }).waitFor();
  check(await page.locator('#invoice-cause').isHidden(), 'no open cause once synced');
  await page.locator('#timeline li[data-event="SituacaoChanged"]').waitFor();
  const after = await page.locator('#timeline li').evaluateAll((items) => items.map((i) => i.dataset.event));
  check(after.includes('SyncResumed'), 'the timeline shows the replay: ' + after);
  await page.screenshot({ path: path.join(SHOTS, '3-invoice-synced.png'), fullPage: true });
  step('reprocessed and synced');

  // 7. The shop revokes access; the afternoon's invoices park. Many invoices at once under
  //    one connection cause reads as a connection problem, and the connection says why.
  await action('revoke');
  await page.getByRole('link', { name: TENANT }).click();
  await page.locator('#tenant-view').waitFor({ state: 'visible' });
  await page.locator('#connection-state', { hasText: 'revoked' }).waitFor();
  const connection = await text(page, '#connection-details');
  check(connection.includes('Revoked since') && connection.includes('Revoked: Bling answered') &&
    connection.includes('invalid_grant'),
    'the revocation evidence is shown: ' + connection);
  await page.locator('#failures-body tr[data-cause="authorization_revoked"]').waitFor();
  check((await text(page, '#failures-body tr[data-cause="authorization_revoked"] [data-testid="failure-invoices"]')) === '3',
    'three invoices parked on the revoked connection');
  const alarm = await text(page, '#failures-headline');
  check(alarm.includes('connection problem'), 'the headline reads as a connection problem: ' + alarm);
  check((await page.locator('#failures-body tr').first().getAttribute('data-cause')) === 'authorization_revoked',
    'the connection cause comes first');
  await page.locator('#failures-body tr[data-cause="authorization_revoked"]')
    .getByRole('button', { name: /Show invoices/ }).click();
  await page.waitForFunction(() => window.location.hash.includes('cause=authorization_revoked'));
  // The unfiltered list (parked rows included) may still be on the page while the filtered one
  // loads: wait for the filtered one rather than take the first parked row as its arrival.
  const filtered = await page
    .waitForFunction(() => document.querySelectorAll('#invoices-body tr').length === 3, null, { timeout: 10_000 })
    .then(() => true, () => false);
  check(filtered, 'the cause filter lists the parked invoices');
  check((await page.locator('#invoices-body tr[data-state="parked"]').count()) === 3, 'all three are parked');
  await page.screenshot({ path: path.join(SHOTS, '4-tenant-revoked.png'), fullPage: true });
  await page.locator('#invoices-body tr a').first().click();
  await page.locator('#invoice-state[data-state="parked"]').waitFor();
  check((await text(page, '[data-testid="cause-kind"]')) === 'authorization_revoked', 'parked for revocation');
  check((await text(page, '[data-testid="advice"]')).includes('reconnect'), 'the advice says to reconnect');
  check(await page.locator('#invoice-reconnect').isVisible(), 'the invoice offers to reconnect');
  const parked = page.locator('#timeline li[data-event="SyncParked"]').first();
  check((await parked.locator('.conn').textContent()).includes('revoked'),
    'the timeline shows the connection revoked at that moment');
  step('revocation reads as a connection problem');

  // 8. Reconnect opens Bling's authorization page for the shop.
  await page.getByRole('link', { name: TENANT }).click();
  await page.locator('#tenant-view').waitFor({ state: 'visible' });
  const [popup] = await Promise.all([
    context.waitForEvent('page'),
    page.getByRole('button', { name: 'Reconnect to Bling' }).click(),
  ]);
  await popup.waitForLoadState('domcontentloaded').catch(() => {});
  check(popup.url().startsWith(AUTHORIZE_URL), 'the authorization page opened: ' + popup.url());
  await popup.close();
  const link = page.locator('[data-testid="authorize-link"]');
  await link.waitFor();
  check((await link.getAttribute('href')).startsWith(AUTHORIZE_URL), 'the fallback link points to Bling');
  step('reconnect opens the authorization page');

  // 9. Signing out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#login-view').waitFor({ state: 'visible' });
  check(await page.evaluate(() => sessionStorage.getItem('bling-ledger.support-token')) === null,
    'the token is forgotten');
  step('signed out');

  // 10. A token for every shop lists them with their connection: revoked since when, and why.
  await page.getByLabel('Support token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#tenants-view').waitFor({ state: 'visible' });
  const row = page.locator(`#tenants-body tr[data-tenant="${TENANT}"]`);
  await row.waitFor();
  check((await text(page, `#tenants-body tr[data-tenant="${TENANT}"] .badge`)) === 'revoked', 'the shop reads revoked');
  const why = (await row.textContent()) || '';
  check(why.includes('revoked since') && why.includes('invalid_grant'), 'since when and why: ' + why);
  check(await row.getByRole('button', { name: 'Reconnect ' + TENANT + ' to Bling' }).isVisible(),
    'each shop can be reconnected from the list');
  check((await text(page, '#tenants-body tr[data-tenant="shop-b"] .badge')) === 'never connected',
    'the other shop reads never connected');
  await page.screenshot({ path: path.join(SHOTS, '5-tenants.png'), fullPage: true });
  step('tenant list with connection states');

  check(problems.length === 0, 'no script error or CSP violation: ' + problems.join(' | '));
  await context.close();
  console.log(JSON.stringify({ ok: true, steps: steps }));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
  },
);
