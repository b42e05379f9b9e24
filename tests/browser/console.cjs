// The console tour in a real browser (issue #15), run by
// tests/tests/console.rs: sign in with the admin token, create a custom
// connection through the form (an error first, shown by its field), enable
// it for apps, try it, log a user in through it from the quickstart's
// demo app (in another browser), create an app (its secret shown once), upload a
// mapper version and roll it back (checked in the page and through the
// API), sign out, sign in through Waypass with the new connection, see who
// is signed in, find that user by email in the Users page and open it, and
// read the logs. With WAYPASS_SCREENSHOTS set, the main pages are saved
// there as PNGs.
'use strict';
const { chromium } = require('playwright-core');
const path = require('path');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const issuer = env('WAYPASS_ISSUER');
const adminToken = env('WAYPASS_ADMIN_TOKEN');
const provider = env('WAYPASS_PROVIDER');
const newUser = env('WAYPASS_NEW_USER_ID');
const mapperFile = env('WAYPASS_MAPPER_FILE');
const userEmail = env('WAYPASS_USER_EMAIL');
const demoApp = env('WAYPASS_DEMO_APP');
const shots = process.env.WAYPASS_SCREENSHOTS;

function check(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
  console.log(`ok - ${what}`);
}

async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  console.log(`screenshot ${name}.png`);
}

async function fillProvider(page, tokenURL) {
  await page.getByLabel('Connection Name').fill('browser-made');
  await page.getByLabel('Display name').fill('Made in a browser');
  await page.getByLabel('Authorization URL').fill(`${provider}/authorize`);
  await page.getByLabel('Token URL').fill(tokenURL);
  await page.getByLabel('Scope').fill('profile');
  await page.getByLabel('Client ID').fill('waypass-at-devprov');
  await page.getByLabel('Client Secret').fill('provider-secret');
}

// The active version of a mapper, through the management API.
async function activeVersion(mapper) {
  const resp = await fetch(`${issuer}/api/v2/mappers/${mapper}/versions`, {
    headers: { authorization: `Bearer ${adminToken}` },
  });
  if (resp.status !== 200) throw new Error(`versions of ${mapper}: ${resp.status}`);
  const body = await resp.json();
  const active = body.versions.filter((v) => v.active);
  return active.length === 1 ? active[0].version : null;
}

let page;

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.WAYPASS_CHROMIUM,
    headless: true,
    args: ['--no-sandbox'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    page = await context.newPage();
    const scriptErrors = [];
    // What the pages' policy refused (an inline style or script would be):
    // the pages must need nothing it forbids. Failed loads are expected
    // (the test provider's icon host does not resolve, refusals are 4xx).
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) scriptErrors.push(m.text());
    });
    page.on('pageerror', (e) => scriptErrors.push(String(e)));

    // Signed out, the console sends the browser to its sign-in page.
    await page.goto(`${issuer}/admin`);
    check(page.url() === `${issuer}/admin/login`, 'an unauthenticated visit lands on the sign-in page');
    await shot(page, 'login');

    // The admin token, typed and submitted with the keyboard.
    await page.getByLabel('Admin token').focus();
    await page.keyboard.type(adminToken);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${issuer}/admin/connections`);
    check(await page.getByRole('heading', { name: 'Connections' }).isVisible(), 'signed in: the connections list');
    await shot(page, 'connections');

    // Create custom: a bad Token URL first, refused by the API and shown by the field.
    await page.getByRole('link', { name: 'Create custom' }).click();
    await page.waitForURL(`${issuer}/admin/connections/new`);
    await fillProvider(page, 'not a url');
    await page.getByRole('button', { name: 'Create' }).click();
    const tokenError = page.locator('#tokenURL-error');
    check(await tokenError.isVisible(), 'the Token URL error is shown next to its field');
    check((await page.getByLabel('Token URL').getAttribute('aria-invalid')) === 'true', 'the field is marked invalid');
    await shot(page, 'connection-error');

    // Fixed, with the registered mapper and its settings.
    await fillProvider(page, `${provider}/token`);
    await page.getByLabel('Registered mapper').check();
    await page.getByLabel('Mapper', { exact: true }).selectOption('auth0-example');
    await page.getByLabel('Mapper settings').fill(`userinfo_url=${provider}/userinfo`);
    await page.getByLabel('Allow private networks').check();
    await page.getByRole('button', { name: 'Create' }).click();
    await page.waitForURL(/\/admin\/connections\/con_/);
    const connectionUrl = page.url();
    check(await page.getByRole('heading', { name: /Made in a browser/ }).isVisible(), 'the connection is created');

    // Applications tab: enable it for the app and for the console's own app.
    await page.locator('input[name=enabled][value=app]').check();
    await page.locator('input[name=enabled][value=console]').check();
    await page.getByRole('button', { name: 'Save applications' }).click();
    await page.waitForURL(/#applications$/);
    check(await page.locator('input[name=enabled][value=app]').isChecked(), 'enabled for the app');
    await shot(page, 'connection');

    // Try: a token the provider does not know; the panel shows the request and the error.
    await page.getByLabel('Provider access token').fill('not-a-real-token');
    await page.getByRole('button', { name: 'Run' }).click();
    const result = page.locator('.result');
    await result.waitFor();
    const tried = await result.innerText();
    check(tried.includes(`${provider}/userinfo`), 'the Try panel lists the request to the provider');
    await result.scrollIntoViewIfNeeded();
    await shot(page, 'try');

    // The demo app logs a user in through the new connection, in another
    // browser (its own cookies: no console session, no Waypass session).
    {
      const elsewhere = await browser.newContext({ viewport: { width: 1200, height: 800 } });
      const app = await elsewhere.newPage();
      await app.goto(demoApp);
      await app.getByRole('link', { name: 'Log in' }).click();
      await app.waitForURL((u) => u.href.startsWith(issuer));
      await app.getByRole('link', { name: /Made in a browser/ }).click();
      await app.waitForURL((u) => u.href.startsWith(provider));
      await app.getByLabel('Username').fill('ada');
      await app.getByLabel('Password').fill('lovelace');
      await app.getByRole('button', { name: 'Log in' }).click();
      await app.waitForURL((u) => u.href.startsWith(`${demoApp}/callback`));
      const hello = await app.locator('body').innerText();
      check(hello.includes(`Hello, ${userEmail}.`), 'the demo app shows the user it logged in through the new connection');
      check(hello.includes(`"sub": "${newUser}"`), 'the demo app got the user of the new connection');
      await shot(app, 'demo-app');
      await elsewhere.close();
    }

    // Apps: create one; its secret is shown this once.
    await page.getByRole('navigation', { name: 'Sections', exact: true }).getByRole('link', { name: 'Applications' }).click();
    await page.waitForURL(`${issuer}/admin/apps`);
    await page.getByLabel('Name').fill('Browser app');
    await page.getByLabel('Type').selectOption('regular_web');
    await page.getByLabel('Allowed callback URLs').fill('https://browser-app.example/callback');
    await page.getByRole('button', { name: 'Create' }).click();
    check(await page.getByText('shown this once').isVisible(), 'the new secret is shown once');
    check((await page.locator('#secret').inputValue()).length >= 32, 'the secret is there to copy');
    await shot(page, 'app-created');
    await page.goto(`${issuer}/admin/apps`);
    check(await page.getByRole('link', { name: 'Browser app' }).isVisible(), 'the app is listed');
    await shot(page, 'apps');

    // Mappers: the list says which connections use each one.
    await page.getByRole('navigation', { name: 'Sections', exact: true }).getByRole('link', { name: 'Mappers' }).click();
    await page.waitForURL(`${issuer}/admin/mappers`);
    const row = page.getByRole('row', { name: /auth0-example/ });
    check((await row.innerText()).includes('Made in a browser'), 'the mapper list names the connection using it');
    await shot(page, 'mappers');
    await row.getByRole('link', { name: 'auth0-example' }).click();
    await page.waitForURL(`${issuer}/admin/mappers/auth0-example`);
    check((await activeVersion('auth0-example')) === 1, 'version 1 is active before the upload (API)');

    // Upload a new version: it becomes the active one.
    await page.getByLabel('Component (.wasm)').setInputFiles(mapperFile);
    await page.getByRole('button', { name: 'Upload version' }).click();
    // The same address after the upload: wait for what it says instead.
    await page.locator('#active-version', { hasText: 'active: v2' }).waitFor();
    check((await page.locator('#active-version').innerText()) === 'active: v2', 'the page shows v2 active after the upload');
    check((await activeVersion('auth0-example')) === 2, 'the API has v2 active after the upload');
    await shot(page, 'mapper');

    // Roll back: activate version 1 again, with the keyboard.
    await page.getByRole('button', { name: 'Activate v1' }).focus();
    await page.keyboard.press('Enter');
    await page.locator('#active-version', { hasText: 'active: v1' }).waitFor();
    check((await page.locator('#active-version').innerText()) === 'active: v1', 'the page shows v1 active after the rollback');
    check((await activeVersion('auth0-example')) === 1, 'the API has v1 active after the rollback');
    await shot(page, 'mapper-rolled-back');

    // Narrow screens: the same list, readable.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${issuer}/admin/connections`);
    await shot(page, 'connections-mobile');
    await page.setViewportSize({ width: 1200, height: 800 });

    // Sign out, then in through Waypass with the new connection.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${issuer}/admin/login`);
    await page.getByRole('link', { name: 'Sign in with Waypass' }).click();
    await page.getByRole('link', { name: /Made in a browser/ }).click();
    await page.waitForURL((u) => u.href.startsWith(provider));
    await page.getByLabel('Username').fill('ada');
    await page.getByLabel('Password').fill('lovelace');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${issuer}/admin/connections`);
    const who = await page.locator('.who').innerText();
    check(who === newUser, `signed in through the new connection as ${newUser}`);

    // The old page still answers for the signed-in user.
    await page.goto(connectionUrl);
    check(await page.getByRole('heading', { name: /Made in a browser/ }).isVisible(), 'the connection page as that user');

    // Users: find the one the login made by email, and open them.
    await page.getByRole('navigation', { name: 'Sections', exact: true }).getByRole('link', { name: 'Users' }).click();
    await page.waitForURL(`${issuer}/admin/users`);
    await page.getByLabel('Search by email').fill(userEmail.toUpperCase());
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/admin\/users\?email=/);
    const found = page.getByRole('row', { name: new RegExp(userEmail.replace('.', '\\.')) });
    check((await found.count()) === 1, `one user found by ${userEmail}`);
    await shot(page, 'users');
    await found.getByRole('link').first().click();
    await page.waitForURL(/\/admin\/users\/oauth2/);
    check((await page.locator('#user-id').innerText()) === newUser, `the user page of ${newUser}`);
    const identities = await page.locator('table.identities').innerText();
    check(identities.includes('browser-made'), 'the identity through the new connection is shown');
    check((await page.locator('table.events').innerText()).includes('Successful login'), 'the login is among the user\'s events');
    await shot(page, 'user');
    // Delete asks first; Cancel leaves the user as they were.
    await page.getByRole('link', { name: 'Delete user' }).click();
    await page.waitForURL(/\/delete$/);
    check(await page.getByRole('button', { name: 'Delete user' }).isVisible(), 'delete asks for a confirmation');
    await shot(page, 'user-delete');
    await page.getByRole('link', { name: 'Cancel' }).click();
    check((await page.locator('#user-id').innerText()) === newUser, 'Cancel goes back to the user');

    // Logs: newest first, filtered by type.
    await page.getByRole('navigation', { name: 'Sections', exact: true }).getByRole('link', { name: 'Logs' }).click();
    await page.waitForURL(`${issuer}/admin/logs`);
    await shot(page, 'logs');
    await page.getByLabel('Event type').selectOption('s');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/type=s/);
    const types = await page.locator('table.events tbody .tag').allInnerTexts();
    check(types.length > 0 && types.every((t) => t === 'Successful login'), 'the filter shows only successful logins');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, 'logs-mobile');
    await page.setViewportSize({ width: 1200, height: 800 });

    check(scriptErrors.length === 0, `nothing refused by the pages' policy (${scriptErrors.join('; ')})`);
  } catch (e) {
    // Where it stopped, to read in the test's failure message.
    if (page) {
      console.error(`at ${page.url()}:`);
      console.error(await page.locator('body').innerText().catch(() => '(no page)'));
    }
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
