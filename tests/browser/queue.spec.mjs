// The admin web UI in a real browser: Debian's headless Chromium driven by playwright-core,
// against the real server that run.sh started on a fresh database. Every check prints
// "ok" or "FAIL"; the last line is "browser: N passed, M failed" and the exit code is
// non-zero when anything failed. Screenshots of every page at 1280 and 390 px go to
// $SCREENSHOTS (target/screenshots).
//
//   BASE_URL=http://127.0.0.1:PORT ADMIN_TOKEN=… SCIM_TOKEN=… OTHER_TOKEN=… node queue.spec.mjs
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = need("BASE_URL");
const ADMIN = need("ADMIN_TOKEN");
const SCIM = need("SCIM_TOKEN");
const OTHER = need("OTHER_TOKEN");
const SHOTS = process.env.SCREENSHOTS || "target/screenshots";
const PROVISIONING = "urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User";
mkdirSync(SHOTS, { recursive: true });

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set (run tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${String(e && e.stack ? e.stack : e).split("\n").slice(0, 4).join("\n     ")}`);
  }
}

async function scim(method, path, body) {
  const res = await fetch(`${BASE}/scim/v2${path}`, {
    method,
    headers: { authorization: `Bearer ${SCIM}`, "content-type": "application/scim+json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function scimUser(userName, given, family) {
  return {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
    userName,
    name: { givenName: given, familyName: family },
    displayName: `${given} ${family}`,
    emails: [{ value: userName, type: "work", primary: true }],
    active: true,
  };
}

/** Every page must pass these: language, labelled controls, one h1, no sideways scroll. */
async function a11y(page, label) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (!document.documentElement.lang) out.push("no lang on <html>");
    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (el.type === "hidden") continue;
      const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label");
      if (!named) out.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name || el.id}`);
    }
    for (const b of document.querySelectorAll("button")) {
      if (!(b.textContent.trim() || b.getAttribute("aria-label"))) out.push("a button without a name");
    }
    if (document.querySelectorAll("h1").length !== 1) out.push("not exactly one h1");
    if (!document.querySelector("main")) out.push("no <main>");
    if (document.documentElement.scrollWidth > window.innerWidth + 1) {
      out.push(`scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
    }
    return out;
  });
  assert(problems.length === 0, `${label}: ${problems.join("; ")}`);
}

/** Keyboard focus is visible: each of the first tab stops draws an outline. */
async function focusVisible(page) {
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press("Tab");
    const seen = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const s = getComputedStyle(el);
      return { what: `${el.tagName} ${el.textContent.trim().slice(0, 20)}`, style: s.outlineStyle, width: s.outlineWidth };
    });
    if (!seen) break;
    assert(seen.style !== "none" && seen.width !== "0px", `no focus outline on ${seen.what}: ${seen.style} ${seen.width}`);
  }
}

/** Screenshots of the current page at desktop and phone widths, checking both layouts. */
async function shoot(page, name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 1280 ? 900 : 844 });
    await a11y(page, `${name} at ${width}px`);
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function signIn(page, token) {
  await page.goto(`${BASE}/ui/login`);
  await page.fill("#token", token);
  await page.click("button[type=submit]");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await ctx.newPage();

  // Users the IdP creates: a joiner (the task we work) and one more for the queue.
  const ann = await scim("POST", "/Users", scimUser("ann.lee@example.com", "Ann", "Lee"));
  const bob = await scim("POST", "/Users", scimUser("bob.ray@example.com", "Bob", "Ray"));
  let taskId = null;

  await check("the IdP's SCIM calls are accepted", async () => {
    assert(ann.status === 201 && bob.status === 201, `SCIM answered ${ann.status}, ${bob.status}`);
  });

  await check("a scim token cannot sign in", async () => {
    await signIn(page, SCIM);
    await page.waitForSelector("#login-error");
    const text = await page.textContent("#login-error");
    assert(text.includes("scim token"), text);
    assert(!(await ctx.cookies()).some((c) => c.name === "sb_session"), "no session cookie");
  });

  await check("the sign-in page is accessible at both widths", async () => {
    await page.goto(`${BASE}/ui/login`);
    await shoot(page, "login");
    await focusVisible(page);
  });

  await check("signing in with an admin token opens the queue with the SCIM task", async () => {
    await signIn(page, ADMIN);
    await page.waitForURL(`${BASE}/ui/tasks`);
    const cookie = (await ctx.cookies()).find((c) => c.name === "sb_session");
    assert(cookie && cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/ui", JSON.stringify(cookie));
    const row = page.locator("tr", { hasText: "ann.lee@example.com" });
    assert((await row.count()) === 1, "Ann's task is listed");
    taskId = Number(await row.getAttribute("data-task"));
    assert(taskId > 0, "task id");
    assert((await page.textContent(".brand .app")).includes("People.ai"), "the app is named");
    await shoot(page, "queue");
  });

  await check("search narrows the queue by email", async () => {
    await page.fill("#q", "bob.ray");
    await page.click("form.filters button[type=submit]");
    await page.waitForURL(/q=bob.ray/);
    assert((await page.locator("tbody tr").count()) === 1, "one row");
    assert((await page.textContent("tbody")).includes("bob.ray@example.com"), "Bob's row");
  });

  await check("the task page shows the checklist, values with copy buttons, and the accounts", async () => {
    await page.goto(`${BASE}/ui/tasks/${taskId}`);
    assert((await page.locator(".checklist li").count()) >= 2, "a checklist");
    await page.check("#step-1");
    const copy = page.locator('button.copy[data-copy="ann.lee@example.com"]').first();
    await copy.click();
    await page.waitForFunction(() => [...document.querySelectorAll("button.copy")].some((b) => b.textContent === "Copied"));
    const clip = await page.evaluate(() => navigator.clipboard.readText().catch(() => ""));
    assert(clip === "" || clip === "ann.lee@example.com", `clipboard has ${clip}`);
    assert((await page.textContent("table.side")).includes("(no account)"), "nothing confirmed yet");
    await shoot(page, "task-open");
  });

  await check("claiming the task shows the completion form from its fields", async () => {
    await page.click("text=Claim this task");
    await page.waitForURL(new RegExp(`/ui/tasks/${taskId}\\?notice=claimed`));
    assert((await page.locator("#f-app_account_id").count()) === 1, "the app_account_id field");
    await shoot(page, "task-claimed");
  });

  await check("a form post without the CSRF token is refused and changes nothing", async () => {
    const status = await page.evaluate(async (id) => {
      const body = new URLSearchParams({ note: "forged" });
      const res = await fetch(`/ui/tasks/${id}/release`, { method: "POST", body });
      return res.status;
    }, taskId);
    assert(status === 403, `answered ${status}`);
    await page.reload();
    assert((await page.locator("#complete-form").count()) === 1, "still held by us");
  });

  await check("completing it with its fields takes it off the queue", async () => {
    await page.fill("#f-app_account_id", "pa-4711");
    await page.fill("#note-done", "Invited from the console");
    await page.setInputFiles("#files", {
      name: "console.png",
      mimeType: "image/png",
      buffer: Buffer.from("89504e470d0a1a0a", "hex"),
    });
    await page.click("text=Mark as done");
    await page.waitForURL(new RegExp(`/ui/tasks\\?completed=${taskId}`));
    assert((await page.textContent(".alert-success")).includes(`#${taskId}`), "a notice");
    assert((await page.locator(`tr[data-task="${taskId}"]`).count()) === 0, "not in the open tab");
    await page.click('.tabs a:has-text("Done")');
    assert((await page.locator(`tr[data-task="${taskId}"]`).count()) === 1, "in the done tab");
  });

  await check("over SCIM the user became synced", async () => {
    const res = await scim("GET", `/Users/${ann.body.id}?attributes=${PROVISIONING}`);
    assert(res.status === 200, `GET answered ${res.status}`);
    const state = res.body[PROVISIONING] && res.body[PROVISIONING].state;
    assert(state === "synced", `state is ${state}`);
  });

  await check("the user page shows the account confirmed and the trail", async () => {
    await page.goto(`${BASE}/ui/users`);
    await page.fill("#q", "ann.lee");
    await page.click("form.filters button[type=submit]");
    await page.click("text=ann.lee@example.com");
    await page.waitForURL(new RegExp(`/ui/users/${ann.body.id}`));
    const trail = await page.textContent(".trail");
    assert(trail.includes("Created by the IdP") && trail.includes("Completed"), trail);
    assert((await page.locator("tr.differs").count()) === 0, "wanted and known agree");
    await shoot(page, "user");
    await page.goto(`${BASE}/ui/users`);
    await shoot(page, "users");
    await page.goto(`${BASE}/ui/tasks/${taskId}`);
    await shoot(page, "task-done");
  });

  await check("the reports page counts seats and draws completion times", async () => {
    await page.goto(`${BASE}/ui/reports`);
    const nums = await page.locator(".stat .num").allTextContents();
    assert(nums[0] === "2" && nums[1] === "1", `seats ${nums}`);
    assert((await page.locator("svg.chart rect").count()) === 1, "one bar (create account)");
    await shoot(page, "reports");
  });

  await check("a token of another app sees nothing of this one", async () => {
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p = await other.newPage();
    await signIn(p, OTHER);
    await p.waitForURL(`${BASE}/ui/tasks`);
    assert((await p.textContent("main")).includes("No tasks here"), "an empty queue");
    assert(!(await p.textContent("main")).includes("bob.ray"), "no other app's users");
    const res = await p.goto(`${BASE}/ui/tasks/${taskId}`);
    assert(res.status() === 404, `task page answered ${res.status()}`);
    await shoot(p, "not-found");
    const users = await p.goto(`${BASE}/ui/users?q=ann`);
    assert(users.status() === 200 && (await p.textContent("main")).includes("No users"), "no users");
    await other.close();
  });

  await check("signing out ends the session", async () => {
    await page.goto(`${BASE}/ui/tasks`);
    await page.click("text=Sign out");
    await page.waitForURL(/\/ui\/login\?signed_out=1/);
    await page.goto(`${BASE}/ui/tasks`);
    assert(page.url().startsWith(`${BASE}/ui/login`), `went to ${page.url()}`);
  });
} finally {
  await browser.close();
}

console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
