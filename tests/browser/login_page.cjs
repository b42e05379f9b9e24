// The branded login page in headless Chromium, at a phone's width and a
// desktop's (driven by tests/tests/login_page.rs).
//
// Environment:
//   WAYPASS_CHROMIUM         the browser (set by tests/src/chromium.rs)
//   WAYPASS_LOGIN_URL        /authorize without a connection: the login page
//   WAYPASS_PROVIDER_ORIGIN  where clicking a connection must lead
//   WAYPASS_EXPECTED_TITLE   the page's title (a template script would change it)
//   WAYPASS_PRIMARY_RGB      the branding's primary colour, as computed style
//   WAYPASS_SCREENSHOTS      optional: a directory for login-phone.png, login-desktop.png
//
// Prints one JSON line: per width, what was seen. Exits 1 with the reason
// on the first check that fails.

const { chromium } = require("playwright-core");
const path = require("path");

const VIEWPORTS = {
  phone: { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  desktop: { width: 1280, height: 800, isMobile: false, hasTouch: false, deviceScaleFactor: 1 },
};
// WCAG 2.2 §2.5.5 (Target Size): 44 CSS pixels.
const MIN_TAP_TARGET = 44;

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function visit(browser, name, viewport) {
  const env = process.env;
  const context = await browser.newContext({
    viewport: { width: viewport.width, height: viewport.height },
    isMobile: viewport.isMobile,
    hasTouch: viewport.hasTouch,
    deviceScaleFactor: viewport.deviceScaleFactor,
  });
  const page = await context.newPage();
  const violations = [];
  page.on("console", (msg) => {
    if (msg.text().includes("Content Security Policy")) {
      violations.push(msg.text());
    }
  });
  const response = await page.goto(env.WAYPASS_LOGIN_URL, { waitUntil: "load" });
  check(response && response.status() === 200, `${name}: the page answered ${response && response.status()}`);

  const seen = { violations: violations.length };
  seen.title = await page.title();
  check(
    seen.title === env.WAYPASS_EXPECTED_TITLE,
    `${name}: the title is "${seen.title}": the template's script ran, or the page is wrong`,
  );

  const buttons = page.locator("a.wp-button");
  seen.buttons = await buttons.count();
  check(seen.buttons > 0, `${name}: no connection buttons`);
  for (let i = 0; i < seen.buttons; i++) {
    const button = buttons.nth(i);
    check(await button.isVisible(), `${name}: button ${i} is not visible`);
    const box = await button.boundingBox();
    check(
      box.x >= 0 && box.x + box.width <= viewport.width + 0.5,
      `${name}: button ${i} leaves the viewport: ${JSON.stringify(box)}`,
    );
    check(box.height >= MIN_TAP_TARGET, `${name}: button ${i} is ${box.height}px tall`);
    const label = (await button.innerText()).trim();
    check(label.includes("Continue with "), `${name}: button ${i} reads "${label}"`);
  }

  // Evaluated through the DevTools protocol: not page script, so the
  // page's policy does not apply to these reads.
  const layout = await page.evaluate(() => {
    const widget = document.querySelector(".wp-widget");
    const logo = document.querySelector("img.wp-logo");
    return {
      horizontalScroll: document.documentElement.scrollWidth > window.innerWidth,
      widgetBorder: widget ? getComputedStyle(widget).borderTopColor : null,
      logoLoaded: Boolean(logo && logo.complete && logo.naturalWidth > 0),
      bodyFontSize: parseFloat(getComputedStyle(document.body).fontSize),
    };
  });
  Object.assign(seen, layout);
  check(!seen.horizontalScroll, `${name}: the page scrolls sideways`);
  check(
    seen.widgetBorder === env.WAYPASS_PRIMARY_RGB,
    `${name}: the widget's accent is ${seen.widgetBorder}, not the primary colour`,
  );
  check(seen.logoLoaded, `${name}: the logo did not load`);
  check(seen.bodyFontSize >= 16, `${name}: text is ${seen.bodyFontSize}px`);

  if (env.WAYPASS_SCREENSHOTS) {
    await page.screenshot({ path: path.join(env.WAYPASS_SCREENSHOTS, `login-${name}.png`), fullPage: true });
  }

  // A plain link: following it reaches the provider (despite the
  // template's <base>).
  await Promise.all([
    page.waitForURL((url) => url.origin === env.WAYPASS_PROVIDER_ORIGIN, { timeout: 30000 }),
    buttons.first().click(),
  ]);
  seen.reachedProvider = new URL(page.url()).origin === env.WAYPASS_PROVIDER_ORIGIN;
  await context.close();
  return seen;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.WAYPASS_CHROMIUM,
    headless: true,
    args: ["--no-sandbox"],
  });
  try {
    const report = {};
    for (const [name, viewport] of Object.entries(VIEWPORTS)) {
      report[name] = await visit(browser, name, viewport);
    }
    console.log(JSON.stringify(report));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
