// The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core, against the real `leasehold` binary (a license node, a license server and
// a client process on loopback). Screenshots of every page, wide and narrow, go to
// artifacts/browser/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.LEASEHOLD_BIN ?? join(root, "target/debug/leasehold");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(root, "artifacts/browser");
const tmp = mkdtempSync(join(tmpdir(), "leasehold-browser-"));
const children = [];

function run(args, env = {}, input = undefined) {
  return execFileSync(bin, args, { env: { ...process.env, ...env }, encoding: "utf8", input });
}

// Starts a long-running command and resolves the regex matches of its stdout lines.
function start(args, patterns, env = {}) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolveFn, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout starting ${args.join(" ")}\n${out}\n${err}`)), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      const found = patterns.map((p) => out.match(p));
      if (found.every(Boolean)) {
        clearTimeout(timer);
        resolveFn({ child, found });
      }
    });
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}\n${out}\n${err}`)));
  });
}

let browser, admin, lease, password, guid, configPath;

before(async () => {
  mkdirSync(shots, { recursive: true });
  const key = JSON.parse(run(["vendor", "keygen", "--out", join(tmp, "key.pem"), "--json"]));
  const node = await start(
    ["node", "serve", "--db", `sqlite://${join(tmp, "node.db")}`, "--listen", "127.0.0.1:0",
     "--signing-key", join(tmp, "key.pem"), "--admin-token", "node-token"],
    [/listening on (http:\/\/\S+)/],
  );
  const nodeUrl = node.found[0][1];
  // The node's first admin, made with its bootstrap token; the vendor commands then carry
  // that account's own token.
  const staff = { LEASEHOLD_NODE: nodeUrl, XDG_CONFIG_HOME: join(tmp, "config") };
  const staffPassword = "browser-test-password\n";
  run(["vendor", "account", "add", "--name", "admin", "--role", "admin", "--password-stdin"],
      { ...staff, LEASEHOLD_VENDOR_TOKEN: "node-token" }, staffPassword);
  const token = run(["vendor", "login", "--name", "admin", "--password-stdin", "--print-token"],
                    staff, staffPassword).trim();
  const vendor = { ...staff, LEASEHOLD_VENDOR_TOKEN: token };
  const inst = JSON.parse(run(["vendor", "--json", "installation", "create", "--name", "Browser test"], vendor));
  const server = JSON.parse(run(["vendor", "--json", "server", "add", "--installation", inst.id, "--context", "production"], vendor));
  guid = server.guid;
  const soon = new Date(Date.now() + 20 * 86400e3).toISOString().slice(0, 10);
  for (const [feature, count, extra] of [["tts", 10, []], ["asr.en-US", 20, []], ["asr.de-DE", 5, ["--expires", soon]]]) {
    run(["vendor", "license", "grant", "--server", guid, "--feature", feature, "--count", String(count),
         "--maintenance", "2030-12-31", ...extra], vendor);
  }
  configPath = join(tmp, "server.toml");
  writeFileSync(configPath, [
    `data_dir = "${join(tmp, "server")}"`,
    `listen = "127.0.0.1:0"`,
    `admin_listen = "127.0.0.1:0"`,
    `nodes = ["${nodeUrl}"]`,
    `vendor_keys = ["${key.public_key}"]`,
    "",
  ].join("\n"));
  const srv = await start(
    ["server", "run", "--config", configPath, "--admin-token", "server-token"],
    [/dashboard password: (\S+)/, /listening on (http:\/\/\S+) \(admin (http:\/\/[^)]+)\)/],
  );
  password = srv.found[0][1];
  lease = srv.found[1][1];
  admin = srv.found[1][2];
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  for (const c of children) c.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

async function shoot(page, name) {
  await page.screenshot({ path: join(shots, `${name}-wide.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, `${name}-narrow.png`), fullPage: true });
  // Nothing may stick out sideways on a phone except scrollable tables.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page is ${overflow}px wider than a phone screen`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function flash(page) {
  return (await page.locator(".flash").innerText()).trim();
}

async function adminStatus() {
  const r = await fetch(`${admin}/v1/admin/status`, { headers: { authorization: "Bearer server-token" } });
  return r.json();
}

test("an operator sets up, syncs and watches a license server in the dashboard", async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();

  await t.test("a page without a session redirects to the login", async () => {
    await page.goto(`${admin}/licenses`);
    assert.match(page.url(), /\/login/);
    await shoot(page, "01-login");
  });

  await t.test("a wrong password is refused, the right one signs in", async () => {
    await page.fill("#password", "not-the-password");
    await page.click("button:has-text('Sign in')");
    assert.match(page.url(), /\/login/);
    assert.ok((await page.content()).toLowerCase().includes("password"));
    await page.fill("#password", password);
    await page.click("button:has-text('Sign in')");
    assert.match(page.url(), /\/licenses/);
  });

  await t.test("the GUID is validated and set", async () => {
    await page.goto(`${admin}/setup`);
    await page.fill("#guid", "{not-a-guid}");
    await page.click("button:has-text('Set GUID')");
    assert.match(await page.locator("#guid-error").innerText(), /GUID/);
    await page.fill("#guid", guid.toLowerCase());
    await page.click("button:has-text('Set GUID')");
    assert.match(await flash(page), /Server GUID set to/);
    await shoot(page, "02-setup");
  });

  await t.test("Sync now shows its outcome and the licenses appear", async () => {
    await page.goto(`${admin}/sync`);
    await page.click("button:has-text('Sync now')");
    assert.match(await flash(page), /Synced with .* bundle serial \d+, 3 licenses/);
    const body = await page.locator("main").innerText();
    assert.match(body, /What we send/);
    assert.match(body, /server_guid/);
    await shoot(page, "03-sync");
    await page.goto(`${admin}/licenses`);
    const table = await page.locator("main").innerText();
    for (const f of ["tts", "asr.en-US", "asr.de-DE"]) assert.ok(table.includes(f), `${f} missing:\n${table}`);
    assert.match(table, /ends in \d+ days/, "the license expiring within 30 days is marked in words");
    await shoot(page, "04-licenses");
  });

  await t.test("clients appear with their names and addresses, searchable and sortable", async () => {
    const keyEnv = { ...process.env, LEASEHOLD_CLIENT_KEY_FILE: join(tmp, "server", "client-key") };
    for (const [name, hold] of [["media-7/transcoder", "1"], ["studio-2/dictation", "3"]]) {
      const client = spawn(bin, ["client", "--servers", lease.replace("http://", ""), "--refresh", "200ms",
        "--name", name, "watch", "--feature", "tts", "--hold", hold, "--duration", "120s", "--json"],
        { stdio: "ignore", env: keyEnv });
      children.push(client);
    }
    await page.goto(`${admin}/clients`);
    await page.waitForFunction(() => {
      const t = document.querySelector("main").innerText;
      // Both named, and what they hold reported (the table refreshes itself every 3 s).
      return t.includes("media-7/transcoder") && t.includes("studio-2/dictation") &&
        /tts 1 in use of/.test(t) && /tts 3 in use of/.test(t);
    }, null, { timeout: 20000 });
    const text = await page.locator("main").innerText();
    assert.match(text, /127\.0\.0\.1/, "the source address is shown");
    assert.match(text, /tts 3 in use of \d+/, "what the client holds is shown");
    assert.match(text, /Connected since/);
    // Sorted by name by default: media before studio.
    const rows = await page.locator("table.clients tbody tr .client-name").allInnerTexts();
    assert.deepEqual(rows, ["media-7/transcoder", "studio-2/dictation"]);
    await shoot(page, "05-clients");

    // Search narrows the list and survives the live refresh.
    await page.fill("#client-search", "studio");
    await page.click("form.search button[type=submit]");
    await page.waitForURL(/q=studio/);
    assert.deepEqual(await page.locator("table.clients tbody tr .client-name").allInnerTexts(), ["studio-2/dictation"]);
    await page.waitForTimeout(3500);
    assert.deepEqual(await page.locator("table.clients tbody tr .client-name").allInnerTexts(), ["studio-2/dictation"]);
    assert.match(await page.locator("main").innerText(), /matching “studio”/);
    await shoot(page, "05-clients-search");

    // Sorting by what they hold puts the dictation (3 in use) first.
    await page.goto(`${admin}/clients`);
    await page.locator("table.clients thead a", { hasText: "Holds" }).click();
    await page.waitForURL(/sort=in_use/);
    assert.deepEqual(await page.locator("table.clients tbody tr .client-name").allInnerTexts(),
      ["studio-2/dictation", "media-7/transcoder"]);
    await page.goto(`${admin}/clients?sort=last_seen&q=nobody`);
    assert.match(await page.locator("main").innerText(), /No client matches “nobody”/);
  });

  await t.test("the client key is shown on Setup and rotates, the old one kept for the overlap", async () => {
    const keyFile = join(tmp, "server", "client-key");
    const firstLine = () => readFileSync(keyFile, "utf8").split("\n")[0].trim();
    const before = firstLine();
    await page.goto(`${admin}/setup`);
    assert.equal((await page.locator("#client-key-value").innerText()).trim(), before);
    await page.getByRole("button", { name: "Rotate the client key" }).click();
    await page.waitForURL(/\/setup$/);
    assert.match(await flash(page), /New client key made/);
    const after = (await page.locator("#client-key-value").innerText()).trim();
    assert.notEqual(after, before);
    assert.equal(after, firstLine());
    assert.match(await page.locator("main").innerText(), /still accepted until/);
    await shoot(page, "05b-client-key");
  });

  await t.test("the usage page shows a chart", async () => {
    await page.goto(`${admin}/usage`);
    assert.ok((await page.locator("main svg").count()) > 0, "no chart on the usage page");
    await shoot(page, "06-usage");
  });

  await t.test("the usage report downloads as CSV with its header row", async () => {
    await page.goto(`${admin}/usage`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#usage-csv")]);
    assert.match(download.suggestedFilename(), /^leasehold-usage-\d{4}-\d{2}-\d{2}-to-\d{4}-\d{2}-\d{2}\.csv$/);
    const text = readFileSync(await download.path(), "utf8");
    const [header, ...rows] = text.trim().split("\n");
    assert.equal(header, "hour,feature,peak_in_use,license_hours,grants,denials,denials_while_free,backup_use_hours,open");
    assert.ok(rows.some((r) => r.includes(",tts,")), `no tts hour in the report:\n${text}`);
  });

  await t.test("a setting is changed, validated and written to the config file", async () => {
    await page.goto(`${admin}/config`);
    await page.fill("#node_timeout", "not a duration");
    await page.click("form[action='/config'] button[type=submit]");
    assert.ok((await page.locator("[aria-invalid=true]").count()) > 0, "the bad value is not marked");
    assert.ok(!readFileSync(configPath, "utf8").includes("not a duration"));
    await page.fill("#node_timeout", "20s");
    await page.click("form[action='/config'] button[type=submit]");
    assert.ok((await flash(page)).length > 0);
    assert.match(readFileSync(configPath, "utf8"), /node_timeout = "20s"/);
    await shoot(page, "07-config");
  });

  await t.test("the diagnostics page renders", async () => {
    await page.goto(`${admin}/diagnostics`);
    assert.match(await page.locator("main").innerText(), /Diagnostics/i);
    await shoot(page, "08-diagnostics");
  });

  await t.test("a form posted without the CSRF token is refused and changes nothing", async () => {
    const before = (await adminStatus()).bundle_serial;
    const r = await page.request.post(`${admin}/sync`, { form: { other: "x" }, maxRedirects: 0 });
    assert.equal(r.status(), 403);
    assert.equal((await adminStatus()).bundle_serial, before);
  });

  await t.test("logging out ends the session", async () => {
    await page.click("button:has-text('Log out')");
    assert.match(page.url(), /\/login/);
    await page.goto(`${admin}/sync`);
    assert.match(page.url(), /\/login/);
  });

  await context.close();
});
