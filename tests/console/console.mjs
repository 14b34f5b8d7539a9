// The admin console in Debian's Chromium, driven by Playwright against a running api-server:
//   node tests/console/console.mjs BASE_URL ADMIN_TOKEN
// Signs in (a wrong token first), creates a policy (a refused form first, showing the API's
// messages by their fields), watches a download appear on the policy's live numbers and chart,
// edits it (a refused lower cap, then a higher one),
// revokes that coupon from the user's wallet, runs the statistics job, shows the daily statistics
// with that coupon, deactivates the policy, and generates unique codes of another policy from its
// page, following the job's progress and downloading their CSV. With CONSOLE_SCREENSHOTS=DIR, saves a screenshot of each page there.
// Exits non-zero with the reason on the first failure.
import { chromium } from "playwright-core";

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: node console.mjs BASE_URL ADMIN_TOKEN");
  process.exit(2);
}
const shots = process.env.CONSOLE_SCREENSHOTS;
const TIMEOUT = 10_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().includes("status of 4")) problems.push(`console: ${message.text()}`);
  });
  // Each page as it is shown: every control labelled (by a <label>, aria-label or its text), and
  // its screenshot when asked for.
  const shot = async (name) => {
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select, textarea, button")]
        .filter((c) => c.labels?.length === 0 && !c.getAttribute("aria-label") && !c.textContent.trim())
        .map((c) => c.id || c.outerHTML.slice(0, 60)),
    );
    if (unlabelled.length) throw new Error(`${name}: controls without a label: ${unlabelled.join(", ")}`);
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };

  await page.goto(`${base}/admin`);
  await shot("sign-in");
  await page.getByLabel("Admin token").fill("not-an-admin-token-at-all");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "The admin token was not accepted" }).waitFor();
  await shot("sign-in-refused");

  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Policies" }).waitFor();
  const stored = await page.evaluate(() => location.href);
  if (stored.includes(token)) throw new Error("the token is in the URL");

  await page.getByRole("link", { name: "New policy" }).click();
  await page.getByRole("button", { name: "Create policy" }).click();
  const nameError = page.locator("#field-couponName-error");
  await nameError.filter({ hasText: /\S/ }).waitFor();
  await page.getByRole("alert").waitFor();
  await shot("policy-form-refused");

  await page.getByLabel("Name", { exact: true }).fill("Console launch");
  await page.getByLabel("Distribution").selectOption("FIRST_COME");
  await page.getByLabel("Discount type").selectOption("FIXED_AMOUNT");
  await page.getByLabel("Discount value").fill("1000");
  await page.getByLabel("Coupons to issue (empty: unlimited)").fill("100");
  await page.getByLabel("Coupons per user").fill("1");
  await page.getByLabel("Days a coupon stays valid").fill("30");
  await page.getByLabel("Issuing from (UTC)").fill("2026-01-01T00:00");
  await page.getByLabel("Issuing until (UTC)").fill("2030-01-01T00:00");
  await page.getByRole("button", { name: "Create policy" }).click();
  await page.getByRole("heading", { name: /Console launch/ }).waitFor();
  const id = Number(page.url().match(/#\/policies\/(\d+)$/)?.[1]);
  if (!id) throw new Error(`no policy id in ${page.url()}`);
  await page.locator("#live-issued").filter({ hasText: /^0$/ }).waitFor();

  // A user downloads a coupon through the public API; the console shows it within its refresh.
  const download = await fetch(`${base}/api/coupons/download`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-User-Id": "4242" },
    body: JSON.stringify({ couponPolicyId: id, userId: 4242 }),
  });
  if (download.status !== 201) throw new Error(`download answered ${download.status}`);
  await page.locator("#live-issued").filter({ hasText: /^1$/ }).waitFor({ timeout: 5_000 });
  await page.locator("#live-remaining").filter({ hasText: /^99$/ }).waitFor();
  await page.waitForFunction(() => window.Chart.getChart("live-chart")?.data.datasets[0].data.at(-1) === 1);
  await shot("policy-live");

  // Editing: a lower cap is refused with the API's message by its field; a higher one is saved.
  await page.getByRole("link", { name: "Edit" }).click();
  await page.getByRole("heading", { name: "Edit Console launch" }).waitFor();
  await shot("policy-edit");
  await page.getByLabel("Coupons to issue (empty: unlimited)").fill("50");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.locator("#field-maxIssueCount-error").filter({ hasText: /\S/ }).waitFor();
  await page.getByRole("alert").waitFor();
  await page.getByLabel("Coupons to issue (empty: unlimited)").fill("150");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByRole("heading", { name: /Console launch/ }).waitFor();
  await page.locator("#live-remaining").filter({ hasText: /^149$/ }).waitFor();

  // Support: the user's wallet, and a revoke with its reason.
  await page.getByRole("link", { name: "Wallets" }).click();
  await page.getByLabel("User id").fill("4242");
  await page.getByRole("button", { name: "Show wallet" }).click();
  await page.getByRole("heading", { name: "Wallet of user 4242" }).waitFor();
  await page.getByRole("button", { name: /^Revoke coupon \d+$/ }).click();
  await page.getByRole("dialog").getByLabel("Reason").fill("Issued by mistake");
  await page.getByRole("dialog").getByLabel("Your name").fill("console test");
  await shot("wallet-revoke");
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await page.getByRole("status").filter({ hasText: "revoked" }).waitFor();
  await page.getByRole("cell", { name: "CANCELLED" }).waitFor();
  await shot("wallet");

  // Jobs: run the statistics job now; its run joins the history.
  await page.getByRole("link", { name: "Jobs" }).click();
  await page.getByRole("heading", { name: "Scheduler jobs" }).waitFor();
  await page.getByRole("button", { name: "Run statistics now" }).click();
  await page.getByRole("status").filter({ hasText: "statistics ran" }).waitFor();
  await page.getByRole("table", { name: "Latest runs of statistics, newest first" }).getByRole("cell", { name: "MANUAL" }).waitFor();
  await shot("jobs");

  await page.getByRole("link", { name: "Statistics" }).click();
  await page.getByRole("heading", { name: "Daily statistics" }).waitFor();
  await page.getByRole("button", { name: "Show" }).click();
  // The statistics job ran: today has a row, with the coupon issued above.
  await page.getByText(/^[1-9]\d* days with statistics from/).waitFor();
  await page.waitForFunction(() => window.Chart.getChart("daily-chart")?.data.datasets[0].data.some((n) => n >= 1));
  await shot("statistics");

  await page.goto(`${base}/admin#/policies/${id}`);
  await page.getByRole("heading", { name: /Console launch/ }).waitFor();
  await page.getByRole("button", { name: "Deactivate…" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Deactivate", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "Deactivated" }).waitFor();

  // Unique codes: a job started from the policy's page, its progress, and the CSV of its codes.
  const created = await fetch(`${base}/api/coupon-policies`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({
      couponName: "Console codes", distributionType: "CODE", codeMode: "UNIQUE", discountType: "FIXED_AMOUNT",
      discountValue: 500, maxIssuePerUser: 1, validDays: 30,
      validFrom: "2026-01-01T00:00:00Z", validUntil: "2030-01-01T00:00:00Z",
    }),
  });
  if (created.status !== 201) throw new Error(`creating a UNIQUE policy answered ${created.status}`);
  const codesPolicy = (await created.json()).id;
  await page.goto(`${base}/admin#/policies/${codesPolicy}`);
  await page.getByRole("heading", { name: "Unique codes" }).waitFor();
  await page.getByLabel("Codes to generate").fill("500");
  await page.getByLabel("Prefix (A-Z, 0-9)").fill("CON");
  await page.getByRole("button", { name: "Generate" }).click();
  await page.getByRole("status").filter({ hasText: /Job \d+ started/ }).waitFor();
  await page.getByRole("cell", { name: "DONE" }).waitFor();
  await shot("codes");
  const [file] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download the codes (CSV)" }).click(),
  ]);
  const csv = await (await import("node:fs/promises")).readFile(await file.path(), "utf8");
  const lines = csv.trim().split("\n");
  if (lines[0] !== "code,status,couponId,userId,redeemedAt" || lines.length !== 501 || !lines[1].startsWith("CON")) {
    throw new Error(`the CSV has ${lines.length} lines, starting ${lines.slice(0, 2).join(" | ")}`);
  }

  // Dead letters: a payment refused before its reservation existed (prepared by the Rust test),
  // replayed once the reservation is made.
  const dlqCoupon = Number(process.env.CONSOLE_DLQ_COUPON);
  if (dlqCoupon) {
    await page.getByRole("link", { name: "Dead letters" }).click();
    await page.getByLabel("Reason").fill("RESERVATION_NOT_FOUND");
    await page.getByRole("button", { name: "Show letters" }).click();
    await page.getByRole("cell", { name: "RESERVATION_NOT_FOUND" }).waitFor();
    await shot("dlq");
    const reserved = await fetch(`${base}/api/coupons/reserve`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-User-Id": "77" },
      body: JSON.stringify({ reservationId: "R-CONSOLE", userId: 77, couponId: dlqCoupon, orderAmount: 50000, orderId: "O-R-CONSOLE" }),
    });
    if (reserved.status !== 200) throw new Error(`reserve answered ${reserved.status}`);
    // By keyboard: the row's button opens the dialog, whose first button (Replay) has the focus.
    await page.getByRole("button", { name: /^Replay .* offset \d+$/ }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog").getByRole("button", { name: "Replay", exact: true }).waitFor();
    await page.keyboard.press("Enter");
    await page.getByRole("status").filter({ hasText: /Replayed .* as offset \d+/ }).waitFor();
  }

  // The keyboard reaches the policies list from the navigation.
  await page.goto(`${base}/admin#/policies`);
  await page.getByRole("heading", { name: "Policies" }).waitFor();
  await page.getByLabel("State").selectOption("inactive");
  await page.getByRole("link", { name: "Console launch" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: /Console launch/ }).waitFor();
  await page.goto(`${base}/admin#/policies`);
  await page.getByRole("heading", { name: "Policies" }).waitFor();
  await shot("policies");
} catch (error) {
  problems.push(error.stack ?? String(error));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("console: all steps passed");
