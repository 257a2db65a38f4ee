// The vendor console in a real browser: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core, against the real `leasehold` binary (a license node on
// loopback). The test walks a support case end to end (sign in as support, find a server by
// GUID, see its fork alert, reassign the GUID with a reason, find that in the audit log),
// then an admin's (transfer a license between two servers, while a support account is
// refused the same action), and screenshots every console page wide and at phone width
// into artifacts/browser/console-*.png, checking that none scrolls sideways on a phone.
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
const tmp = mkdtempSync(join(tmpdir(), "leasehold-console-"));
const children = [];
const BOOTSTRAP = "console-test-bootstrap-token";
const PASSWORD = { alice: "alice's long password", sam: "sam's long password 42" };

let browser, node, adminToken;
const ids = {};

function run(args, env = {}) {
  return execFileSync(bin, args, { env: { ...process.env, ...env }, encoding: "utf8" });
}

function start(args, pattern) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolveFn, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout starting ${args.join(" ")}\n${out}\n${err}`)), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolveFn(m);
      }
    });
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}\n${out}\n${err}`)));
  });
}

// The node's admin API, as a script of the vendor's would call it.
async function api(method, path, body, token = adminToken, reason) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (reason) headers["leasehold-reason"] = encodeURIComponent(reason);
  const r = await fetch(`${node}/v1/admin${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

// A license server's sync, as a real one sends it; returns the bundle's payload.
async function sync(server) {
  const r = await fetch(`${node}/v1/sync`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(upload(server)),
  });
  const text = await r.text();
  if (!r.ok) return { refused: JSON.parse(text) };
  const envelope = JSON.parse(text);
  const payload = JSON.parse(Buffer.from(envelope.payload, "base64url").toString("utf8"));
  server.token = payload.next_sync_token;
  server.serial = payload.serial;
  server.context = payload.context;
  server.usage = [];
  return payload;
}

function upload(server) {
  return {
    server_guid: server.guid,
    instance_id: server.instance,
    sync_token: server.token ?? null,
    last_bundle_serial: server.serial ?? 0,
    context: server.context ?? null,
    software_version: "browser-test",
    usage: server.usage ?? [],
  };
}

function fakeServer(guid, byte) {
  return { guid, instance: "inst-" + byte.repeat(32), usage: [] };
}

function bucket(seq, feature, hour, peak, backupSecs = 0) {
  return {
    seq, feature, hour, peak_in_use: peak, grants: peak * 3, denials: 0, denials_while_free: 0,
    backup_use_secs: backupSecs, license_secs: peak * 1800,
  };
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  run(["vendor", "keygen", "--out", join(tmp, "key.pem"), "--json"]);
  const m = await start(
    ["node", "serve", "--db", `sqlite://${join(tmp, "node.db")}`, "--listen", "127.0.0.1:0",
     "--signing-key", join(tmp, "key.pem"), "--admin-token", BOOTSTRAP],
    /listening on (http:\/\/\S+)/,
  );
  node = m[1];
  // The first admin, with the bootstrap token; then the admin signs in for a token.
  await api("POST", "/accounts", { name: "alice", role: "admin", password: PASSWORD.alice }, BOOTSTRAP, "first admin");
  adminToken = (await api("POST", "/login", { name: "alice", password: PASSWORD.alice, label: "browser test" }, null)).token;
  await api("POST", "/accounts", { name: "sam", role: "support", password: PASSWORD.sam }, adminToken, "new support engineer");

  // Acme: production and backup servers; Globex: a production server.
  const acme = await api("POST", "/installations", { name: "Acme call centre, Berlin" });
  const prod = await api("POST", "/servers", { installation: acme.id, context: "production" });
  const backup = await api("POST", "/servers", { installation: acme.id, context: "backup" });
  const globex = await api("POST", "/installations", { name: "Globex, Springfield" });
  const gprod = await api("POST", "/servers", { installation: globex.id, context: "production" });
  const soon = new Date(Date.now() + 20 * 86400e3).toISOString().slice(0, 10);
  const tts = await api("POST", "/licenses", { server: prod.guid, feature: "tts", count: 10, maintenance_until: "2030-12-31" });
  await api("POST", "/licenses", { server: backup.guid, feature: "tts", count: 10, maintenance_until: "2030-12-31", backs_up: tts.id });
  const asr = await api("POST", "/licenses", { server: prod.guid, feature: "asr.en-US", count: 20, maintenance_until: soon });
  Object.assign(ids, { acme: acme.id, globex: globex.id, prod: prod.guid, backup: backup.guid, gprod: gprod.guid, tts: tts.id, asr: asr.id });

  // Usage: production and backup in the same hours (the backup used beside production).
  const hour = new Date(Math.floor(Date.now() / 3600e3) * 3600e3);
  const hourAgo = (h) => new Date(hour.getTime() - h * 3600e3).toISOString().replace(".000Z", "Z");
  const p = fakeServer(prod.guid, "a");
  p.usage = [bucket(1, "tts", hourAgo(30), 7), bucket(2, "tts", hourAgo(3), 9), bucket(3, "asr.en-US", hourAgo(3), 12)];
  await sync(p);
  const b = fakeServer(backup.guid, "b");
  b.usage = [bucket(1, "tts", hourAgo(3), 3, 1800)];
  await sync(b);
  // A cloned production server: the copy made now syncs later with the older token (a
  // new branch), after which the original's next sync is a fork, refused and counted.
  const copy = { ...p, usage: [] };
  await sync(p);
  await sync(copy);
  const refused = await sync(p);
  assert.equal(refused.refused?.error, "guid_in_use", "the second copy is refused");
  writeFileSync(join(tmp, "globex-upload.json"), JSON.stringify(upload(fakeServer(gprod.guid, "c"))));

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
  await page.screenshot({ path: join(shots, `console-${name}-wide.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, `console-${name}-narrow.png`), fullPage: true });
  // Nothing may stick out sideways on a phone.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: the page is ${overflow}px wider than a phone screen`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function flash(page) {
  return (await page.locator(".flash").first().innerText()).trim();
}

async function signIn(page, name) {
  await page.goto(`${node}/console/login`);
  await page.fill("#name", name);
  await page.fill("#password", PASSWORD[name]);
  await page.click("button:has-text('Sign in')");
  await page.waitForURL(/\/console$/);
  assert.equal((await page.locator("#whoami").innerText()).trim(), name);
}

async function auditEntries(query) {
  return (await api("GET", `/audit?${query}`)).entries;
}

test("a support engineer resolves a GUID conflict: find, see the fork, reassign with a reason, audit", async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();

  await t.test("a page without a session goes to the sign-in; a wrong password is refused", async () => {
    await page.goto(`${node}/console/installations`);
    assert.match(page.url(), /\/console\/login\?next=/);
    await page.fill("#name", "sam");
    await page.fill("#password", "not the password at all");
    await page.click("button:has-text('Sign in')");
    assert.match(await page.locator("#login-error").innerText(), /Wrong account name or password/);
    await shoot(page, "01-login");
  });

  await t.test("signed in as support, the home page shows what needs attention", async () => {
    await signIn(page, "sam");
    assert.equal((await page.locator("#role").innerText()).trim(), "support");
    const main = await page.locator("main").innerText();
    assert.match(main, /GUID conflict/);
    await shoot(page, "02-home");
  });

  await t.test("a search by GUID, lower case and without braces, opens the server with its fork alert", async () => {
    await page.fill("#q", ids.prod.replace(/[{}]/g, "").toLowerCase());
    await page.click("form.search button[type=submit]");
    await page.waitForURL(/\/console\/servers\//);
    assert.match(await page.locator("#fork-alert").innerText(), /GUID conflict: 1 sync of a second copy refused/);
    // Support sees its own actions, not the admin's.
    assert.equal(await page.locator("a:has-text('Reassign GUID')").count(), 1);
    assert.equal(await page.locator("a:has-text('Grant a license')").count(), 0);
    await shoot(page, "03-server");
  });

  await t.test("the installation page shows servers, the fork, licenses, usage charts with the overlap marked", async () => {
    await page.click(`a[href="/console/installations/${ids.acme}"]`);
    await page.waitForURL(/\/console\/installations\/inst_/);
    const main = await page.locator("main").innerText();
    assert.match(main, /Acme call centre, Berlin/);
    assert.match(main, /GUID conflict/);
    assert.match(main, /maintenance ends in \d+ days/);
    assert.ok((await page.locator("figure.chart svg").count()) >= 2, "a chart per feature");
    assert.ok((await page.locator("table.overlap tbody tr").count()) >= 1, "the overlap hour is listed");
    await shoot(page, "04-installation");
  });

  await t.test("reassigning needs a confirmation and a reason, then resolves the fork", async () => {
    await page.goto(`${node}/console/servers/${ids.prod.replace(/[{}]/g, "")}`);
    await page.click("a:has-text('Reassign GUID')");
    await shoot(page, "05-reassign-form");
    await page.click("button:has-text('Review')");
    assert.match(await page.locator("main").innerText(), /Please confirm/);
    await shoot(page, "06-reassign-confirm");
    // The browser will not send an empty reason; blanks get past it, and the console asks
    // again, nothing changed.
    await page.fill("#reason", "   ");
    await page.click("button:has-text('Reassign GUID')");
    assert.match(await page.locator("#reason-error").innerText(), /Give a reason/);
    assert.ok((await api("GET", `/servers/${ids.prod.replace(/[{}]/g, "")}`)).instance_id, "still bound");
    await page.fill("#reason", "Ticket 4711: the customer restored the VM; the restored copy keeps the GUID");
    await page.click("button:has-text('Reassign GUID')");
    await page.waitForURL(/\/console\/servers\/[0-9A-F-]+$/);
    assert.match(await flash(page), /reassigned/);
    assert.equal(await page.locator("#fork-alert").count(), 0, "the fork is resolved");
    assert.equal((await api("GET", `/servers/${ids.prod.replace(/[{}]/g, "")}`)).instance_id, null);
  });

  await t.test("the reassign is in the audit log: who, why, before and after", async () => {
    await page.click("a[href='/console/audit']");
    await page.fill("#a-server", ids.prod);
    await page.click("button:has-text('Show')");
    await page.waitForURL(/server=/);
    const row = page.locator("tr.audit-entry", { hasText: "server.reassign" }).first();
    const text = await row.innerText();
    assert.match(text, /sam/);
    assert.match(text, /support · console/);
    assert.match(text, /Ticket 4711/);
    assert.match(text, /instance_id/);
    await row.locator("summary").click();
    await shoot(page, "07-audit");
    const entries = await auditEntries(`server=${encodeURIComponent(ids.prod)}`);
    assert.equal(entries[0].action, "server.reassign");
    assert.equal(entries[0].actor, "sam");
    assert.equal(entries[0].via, "console");
  });

  await t.test("support is refused an admin's action, at the page and on a forged form", async () => {
    await page.goto(`${node}/console/licenses/${ids.tts}`);
    assert.equal(await page.locator("a:has-text('Transfer')").count(), 0, "no transfer button for support");
    await shoot(page, "08-license-as-support");
    const r = await page.goto(`${node}/console/licenses/${ids.tts}/transfer`);
    assert.equal(r.status(), 403);
    assert.match(await page.locator("main").innerText(), /needs the admin role/);
    await shoot(page, "09-refused");
    // A forged confirmation with this session's CSRF token: refused, the license stays.
    await page.goto(`${node}/console`);
    const csrf = await page.locator("input[name=csrf]").first().getAttribute("value");
    const before = await api("GET", `/licenses/${ids.tts}`);
    const posted = await page.request.post(`${node}/console/licenses/${ids.tts}/transfer`, {
      form: { csrf, to: ids.gprod, stage: "confirm", reason: "sneaky" }, maxRedirects: 0,
    });
    assert.equal(posted.status(), 403);
    assert.deepEqual(await api("GET", `/licenses/${ids.tts}`), before);
    assert.equal((await auditEntries(`target=${ids.tts}`)).filter((e) => e.action === "license.transfer").length, 0);
  });

  await t.test("support answers an air-gapped sync and downloads the signed bundle", async () => {
    await page.goto(`${node}/console/servers/${ids.gprod.replace(/[{}]/g, "")}/offline-sync`);
    await shoot(page, "10-offline-sync");
    await page.setInputFiles("#f-upload", join(tmp, "globex-upload.json"));
    await page.click("button:has-text('Review')");
    assert.match(await page.locator("main").innerText(), /Please confirm/);
    await page.fill("#reason", "Globex site is air-gapped; upload came by e-mail");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("button:has-text('Answer and download the bundle')"),
    ]);
    assert.match(download.suggestedFilename(), /^leasehold-bundle-[0-9A-F-]+\.json$/);
    const envelope = JSON.parse(readFileSync(await download.path(), "utf8"));
    assert.ok(envelope.kid && envelope.payload && envelope.sig, "a signed envelope");
    const entries = await auditEntries(`server=${encodeURIComponent(ids.gprod)}`);
    assert.equal(entries[0].action, "server.offline_sync");
  });

  await t.test("every other page a support engineer reads renders and fits a phone", async () => {
    for (const [path, name] of [
      ["/console/installations", "11-installations"],
      ["/console/events", "12-events"],
      [`/console/reports/usage?installation=${ids.acme}`, "13-usage-report"],
      ["/console/accounts", "14-accounts"],
      ["/console/account", "15-my-account"],
      ["/console/search?q=glob", "16-search"],
    ]) {
      const r = await page.goto(`${node}${path}`);
      assert.equal(r.status(), 200, path);
      await shoot(page, name);
    }
    // The usage report's CSV.
    await page.goto(`${node}/console/reports/usage?installation=${ids.acme}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#usage-csv")]);
    const text = readFileSync(await download.path(), "utf8");
    assert.match(text.split("\n")[0], /^kind,day_or_hour,feature/);
    assert.match(text, /\nsimultaneous,/);
  });

  await t.test("logging out ends the session", async () => {
    await page.click("button:has-text('Log out')");
    await page.waitForURL(/\/console\/login/);
    await page.goto(`${node}/console`);
    assert.match(page.url(), /\/console\/login/);
  });
  await context.close();
});

test("an admin transfers a license between two servers", async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await signIn(page, "alice");

  await t.test("a license without a backup twin moves to another installation's server", async () => {
    await page.goto(`${node}/console/licenses/${ids.asr}`);
    await shoot(page, "17-license");
    await page.click("a:has-text('Transfer to another server')");
    await page.fill("#f-to", "{not-a-guid}");
    await page.click("button:has-text('Review')");
    assert.match(await page.locator("#f-to-error").innerText(), /GUID/);
    await page.fill("#f-to", ids.gprod);
    await shoot(page, "18-transfer-form");
    await page.click("button:has-text('Review')");
    const confirm = await page.locator("main").innerText();
    assert.match(confirm, /another installation/);
    await shoot(page, "19-transfer-confirm");
    await page.fill("#reason", "Contract moved to Globex (ticket 815)");
    await page.click("button:has-text('Transfer license')");
    await page.waitForURL(/\/console\/licenses\/lic_/);
    assert.match(await flash(page), /transferred/);
    assert.equal((await api("GET", `/licenses/${ids.asr}`)).server, ids.gprod);
    const e = (await auditEntries(`target=${ids.asr}`)).find((x) => x.action === "license.transfer");
    assert.equal(e.actor, "alice");
    assert.equal(e.reason, "Contract moved to Globex (ticket 815)");
    assert.deepEqual(e.installations.sort(), [ids.acme, ids.globex].sort());
  });

  await t.test("the admin's pages: grant, settings, new account (its password shown once)", async () => {
    const seg = ids.backup.replace(/[{}]/g, "");
    await page.goto(`${node}/console/servers/${seg}/grant`);
    await shoot(page, "20-grant");
    await page.goto(`${node}/console/servers/${seg}/settings`);
    await shoot(page, "21-settings");
    await page.goto(`${node}/console/accounts/new`);
    await page.fill("#f-name", "petra@vendor.example");
    await page.click("button:has-text('Review')");
    await page.fill("#reason", "new hire on the support desk");
    await page.click("button:has-text('Create account')");
    const password = await page.locator("#secret").inputValue();
    assert.ok(password.length >= 12);
    await shoot(page, "22-account-created");
    await page.goto(`${node}/console/accounts/sam/edit`);
    await shoot(page, "23-edit-account");
  });
  await context.close();
});
