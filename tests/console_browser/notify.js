// Drives the support console's notification and reconnect-link panels in headless Chromium
// (tests/it/notify.rs sets the scene: an endpoint disabled after failing, a delivery waiting).
//
// Environment: CONSOLE_URL, SUPPORT_TOKEN, TENANT, ENDPOINT_URL, USER_DATA_DIR, CHROMIUM.
// Prints a JSON summary last; any failed expectation exits non-zero with the reason on stderr.
'use strict';

const { chromium } = require('playwright-core');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error('missing environment variable ' + name);
  return v;
};
const BASE = env('CONSOLE_URL');
const TOKEN = env('SUPPORT_TOKEN');
const TENANT = env('TENANT');
const ENDPOINT_URL = env('ENDPOINT_URL');

setTimeout(() => {
  console.error('notify.js: timed out after 60 s');
  process.exit(3);
}, 60_000).unref();

function check(condition, message) {
  if (!condition) throw new Error('expectation failed: ' + message);
}

async function main() {
  const context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    viewport: { width: 1280, height: 900 },
    locale: 'en-GB',
    timezoneId: 'America/Sao_Paulo',
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push('console error: ' + m.text());
  });
  const steps = [];

  await page.goto(BASE + '/');
  await page.getByLabel('Support token').fill(TOKEN);
  await page.getByLabel('Support token').press('Enter');
  await page.locator('#tenant-view').waitFor({ state: 'visible' });
  check((await page.locator('#tenant-title').textContent()).trim() === TENANT, 'the shop is shown');

  // The endpoint, disabled by the ledger, says why.
  const endpoint = page.locator('#endpoints section.endpoint');
  await endpoint.first().waitFor();
  const shown = await endpoint.first().textContent();
  check(shown.includes(ENDPOINT_URL), 'the endpoint URL is shown: ' + shown);
  check(shown.includes('disabled'), 'the endpoint reads disabled');
  const warning = await endpoint.first().locator('[data-testid="endpoint-warning"]').first().textContent();
  check(warning.includes('every delivery attempt failed') && warning.includes('HTTP 500'), 'why it was disabled: ' + warning);
  steps.push('disabled endpoint and its reason');

  // Its waiting delivery, and every attempt with its status.
  const row = endpoint.first().locator('[data-testid="deliveries"] tbody tr').first();
  await row.waitFor();
  check((await row.textContent()).includes('pending'), 'the delivery waits');
  await row.getByRole('button', { name: 'Attempts' }).click();
  const attempts = endpoint.first().locator('tr.attempts');
  await attempts.waitFor();
  const attemptsText = await attempts.textContent();
  check(attemptsText.includes('HTTP 500') && attemptsText.includes('#1'), 'the attempts are listed: ' + attemptsText);
  steps.push('attempts shown');

  // Resend one message.
  await row.getByRole('button', { name: 'Resend' }).click();
  await page.locator('#flash', { hasText: 'will be sent again' }).waitFor();
  steps.push('resend');

  // A reconnect link for the owner, then listed as sent and not opened.
  await page.getByRole('button', { name: 'Make a reconnect link' }).click();
  const link = page.locator('[data-testid="link-url"]');
  await link.waitFor();
  check((await link.textContent()).includes('/reconnect/' + TENANT + '/'), 'the link is shown to copy');
  await page.locator('#links-body tr', { hasText: 'not opened yet' }).first().waitFor();
  steps.push('reconnect link made and listed');

  check(problems.length === 0, 'no script error or CSP violation: ' + problems.join(' | '));
  await context.close();
  console.log(JSON.stringify({ steps }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
