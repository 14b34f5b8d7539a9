// The admin console (SPEC §11.8): a page per hash route, each rendered into <main> from the public
// API's answers. The admin token is kept in this tab's sessionStorage and sent as a bearer token;
// it never goes into a URL. The console holds no business rule: what it shows and refuses is what
// the API answers.

const TOKEN_KEY = "coupon-admin-token";
const REFRESH_MS = 2000;

// ---- the API --------------------------------------------------------------------------------

/** An answer other than 2xx, with the message a person should read. */
class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.fieldErrors = Array.isArray(body?.fieldErrors) ? body.fieldErrors : [];
  }
}

/** What to tell the person: the API's own message for a refusal, never a server's internals. */
function describe(status, body) {
  if (status === 401 || status === 403) {
    return "The admin token was not accepted. Sign in again with a token from COUPON_ADMIN_TOKENS.";
  }
  if (status >= 500 || status === 0) {
    return `The service could not answer (HTTP ${status || "no connection"}). Try again in a moment.`;
  }
  return typeof body?.message === "string" ? body.message : `The request was refused (HTTP ${status}).`;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) signOut();
    throw new ApiError(response.status, data);
  }
  return data;
}

// ---- DOM helpers ----------------------------------------------------------------------------

/** An element with attributes (`on…` keys are listeners) and children (strings become text). */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const main = () => document.getElementById("main");

function show(...nodes) {
  main().replaceChildren(...nodes);
  main().focus();
}

function alertBox(message) {
  return h("div", { class: "alert", role: "alert" }, message);
}

const formatNumber = (n) => (n === null || n === undefined ? "unlimited" : Number(n).toLocaleString("en"));
const formatDate = (iso) => (iso ? `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC` : "—");

// ---- routing --------------------------------------------------------------------------------

/** Stops the current page's timers and charts when another page is shown. */
let leavePage = () => {};

const routes = [
  [/^#\/policies$/, () => policiesPage()],
  [/^#\/policies\/new$/, () => policyFormPage(null)],
  [/^#\/policies\/(\d+)\/edit$/, (m) => policyFormPage(Number(m[1]))],
  [/^#\/policies\/(\d+)$/, (m) => policyPage(Number(m[1]))],
  [/^#\/statistics$/, () => dailyPage()],
  [/^#\/jobs$/, () => jobsPage()],
  [/^#\/dlq$/, () => dlqPage()],
  [/^#\/wallet$/, () => walletPage(null)],
  [/^#\/wallet\/(\d+)$/, (m) => walletPage(Number(m[1]))],
];

function route() {
  leavePage();
  leavePage = () => {};
  const signedIn = Boolean(token());
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) return signInPage();
  const hash = location.hash || "#/policies";
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", hash.startsWith(link.getAttribute("href")));
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  for (const [pattern, page] of routes) {
    const match = hash.match(pattern);
    if (match) return page(match);
  }
  location.hash = "#/policies";
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  route();
}

// ---- sign-in --------------------------------------------------------------------------------

function signInPage(message) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true });
  const status = h("div", { "aria-live": "polite" }, message ? alertBox(message) : null);
  const form = h(
    "form",
    {
      class: "edit",
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        try {
          await api("GET", "/api/coupon-policies?limit=1");
          location.hash = "#/policies";
          route();
        } catch (error) {
          sessionStorage.removeItem(TOKEN_KEY);
          signInPage(error.message);
        }
      },
    },
    h("h2", {}, "Sign in"),
    h("label", { for: "token" }, "Admin token"),
    input,
    h("p", { class: "hint" }, "Kept for this browser tab only."),
    h("button", { type: "submit" }, "Sign in"),
  );
  show(status, form);
  input.focus();
}

// ---- policies -------------------------------------------------------------------------------

/** Every policy, newest first, read a page of 100 at a time. */
async function allPolicies() {
  const policies = [];
  let cursor = null;
  for (let page = 0; page < 50; page += 1) {
    const query = cursor === null ? "limit=100" : `limit=100&cursor=${encodeURIComponent(cursor)}`;
    const answer = await api("GET", `/api/coupon-policies?${query}`);
    policies.push(...answer.policies);
    if (!answer.hasMore) break;
    cursor = answer.nextCursor;
  }
  return policies;
}

async function policiesPage() {
  show(h("h2", {}, "Policies"), h("p", {}, "Loading…"));
  let policies;
  try {
    policies = await allPolicies();
  } catch (error) {
    return show(h("h2", {}, "Policies"), alertBox(error.message));
  }
  const text = h("input", { id: "filter-text", type: "search", placeholder: "Name or code" });
  const type = h(
    "select",
    { id: "filter-type" },
    h("option", { value: "" }, "All"),
    ["CODE", "DOWNLOAD", "FIRST_COME", "EVENT", "DIRECT"].map((t) => h("option", { value: t }, t)),
  );
  const state = h(
    "select",
    { id: "filter-state" },
    h("option", { value: "" }, "All"),
    h("option", { value: "active" }, "Active"),
    h("option", { value: "inactive" }, "Inactive"),
  );
  const body = h("tbody");
  const count = h("p", { "aria-live": "polite", class: "hint" });
  const render = () => {
    const needle = text.value.trim().toLowerCase();
    const shown = policies.filter(
      (p) =>
        (!needle || p.couponName.toLowerCase().includes(needle) || (p.couponCode ?? "").toLowerCase().includes(needle)) &&
        (!type.value || p.distributionType === type.value) &&
        (!state.value || (state.value === "active") === p.isActive),
    );
    body.replaceChildren(
      ...shown.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, p.id),
          h("td", {}, h("a", { href: `#/policies/${p.id}` }, p.couponName)),
          h("td", {}, p.distributionType),
          h("td", {}, p.isActive ? "active" : "inactive"),
          h("td", {}, `${formatNumber(p.currentIssueCount)} / ${formatNumber(p.maxIssueCount)}`),
          h("td", {}, formatDate(p.validUntil)),
        ),
      ),
    );
    count.textContent = `${shown.length} of ${policies.length} policies`;
  };
  for (const control of [text, type, state]) control.addEventListener("input", render);
  render();
  show(
    h("h2", {}, "Policies"),
    h("div", { class: "toolbar" }, h("a", { class: "button", href: "#/policies/new" }, "New policy")),
    h(
      "div",
      { class: "filters", role: "search" },
      h("div", {}, h("label", { for: "filter-text" }, "Search"), text),
      h("div", {}, h("label", { for: "filter-type" }, "Distribution"), type),
      h("div", {}, h("label", { for: "filter-state" }, "State"), state),
    ),
    count,
    h(
      "table",
      {},
      h("caption", { class: "hint" }, "Coupon policies"),
      h(
        "thead",
        {},
        h("tr", {}, ["Id", "Name", "Distribution", "State", "Issued / cap", "Valid until"].map((c) => h("th", { scope: "col" }, c))),
      ),
      body,
    ),
  );
}

/** The fields of the policy form: [name, label, kind, options]; `create` only on creation. */
const POLICY_FIELDS = [
  ["couponName", "Name", "text", { edit: true }],
  ["description", "Description", "textarea", { edit: true }],
  ["distributionType", "Distribution", ["DOWNLOAD", "FIRST_COME", "CODE", "EVENT", "DIRECT"], {}],
  ["couponCode", "Coupon code (CODE, shared)", "text", {}],
  ["codeMode", "Code mode (CODE)", ["SHARED", "UNIQUE"], {}],
  ["discountType", "Discount type", ["FIXED_AMOUNT", "PERCENTAGE"], {}],
  ["discountValue", "Discount value", "number", {}],
  ["maxDiscountAmount", "Largest discount", "number", {}],
  ["minimumOrderAmount", "Smallest order", "number", {}],
  ["maxIssueCount", "Coupons to issue (empty: unlimited)", "number", { edit: true }],
  ["maxIssuePerUser", "Coupons per user", "number", {}],
  ["validDays", "Days a coupon stays valid", "number", {}],
  ["validFrom", "Issuing from (UTC)", "datetime-local", {}],
  ["validUntil", "Issuing until (UTC)", "datetime-local", { edit: true }],
  ["budgetAmount", "Spend budget (empty: none)", "number", { edit: true }],
  ["stackable", "Stackable with other coupons of an order", "checkbox", {}],
];

const toLocalInput = (iso) => (iso ? iso.slice(0, 16) : "");
const fromLocalInput = (value) => (value ? `${value}:00Z` : null);

async function policyFormPage(id) {
  let existing = null;
  if (id !== null) {
    try {
      existing = await api("GET", `/api/coupon-policies/${id}`);
    } catch (error) {
      return show(h("h2", {}, "Edit policy"), alertBox(error.message));
    }
  }
  const controls = {};
  const errors = {};
  const fields = POLICY_FIELDS.filter(([, , , options]) => existing === null || options.edit).map(([name, label, kind]) => {
    const id = `field-${name}`;
    const errorId = `${id}-error`;
    errors[name] = h("div", { id: errorId, class: "field-error" });
    let control;
    const value = existing?.[name];
    if (Array.isArray(kind)) {
      control = h("select", { id, name, "aria-describedby": errorId }, kind.map((k) => h("option", { value: k }, k)));
      if (value) control.value = value;
    } else if (kind === "textarea") {
      control = h("textarea", { id, name, rows: 2, "aria-describedby": errorId }, value ?? "");
    } else if (kind === "checkbox") {
      control = h("input", { id, name, type: "checkbox", checked: Boolean(value), "aria-describedby": errorId });
      controls[name] = control;
      return h("div", {}, h("div", { class: "check" }, control, h("label", { for: id }, label)), errors[name]);
    } else {
      const step = kind === "number" ? "any" : undefined;
      const shown = kind === "datetime-local" ? toLocalInput(value) : (value ?? "");
      control = h("input", { id, name, type: kind, step, value: shown, "aria-describedby": errorId });
    }
    controls[name] = control;
    return h("div", {}, h("label", { for: id }, label), control, errors[name]);
  });
  const status = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit" }, existing ? "Save changes" : "Create policy");
  const read = (name) => {
    const control = controls[name];
    const [, , kind] = POLICY_FIELDS.find(([n]) => n === name);
    if (kind === "checkbox") return control.checked;
    if (kind === "datetime-local") return fromLocalInput(control.value);
    if (kind === "number") return control.value === "" ? null : Number(control.value);
    return control.value === "" ? null : control.value;
  };
  const form = h(
    "form",
    {
      class: "edit",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        for (const box of Object.values(errors)) box.textContent = "";
        status.replaceChildren();
        // A new policy sends what is filled in; a change sends only what differs, since the cap
        // and the budget may only grow and the window only lengthen.
        const body = {};
        for (const name of Object.keys(controls)) {
          const value = read(name);
          const before = existing?.[name] ?? null;
          const same = existing && (name === "validUntil" ? toLocalInput(before) === controls[name].value : String(before) === String(value));
          if (value !== null && !same) body[name] = value;
        }
        try {
          const saved = existing
            ? await api("PATCH", `/api/coupon-policies/${existing.id}`, body)
            : await api("POST", "/api/coupon-policies", body);
          location.hash = `#/policies/${saved.id}`;
        } catch (error) {
          status.replaceChildren(alertBox(error.message));
          for (const { field, message } of error.fieldErrors ?? []) {
            if (errors[field]) errors[field].textContent = message;
          }
          submit.disabled = false;
        }
      },
    },
    h("fieldset", {}, h("legend", { class: "hint" }, existing ? `Policy ${existing.id}` : "A new coupon policy"), fields),
    h("div", { class: "toolbar" }, submit, h("a", { class: "button secondary", href: existing ? `#/policies/${existing.id}` : "#/policies" }, "Cancel")),
  );
  show(h("h2", {}, existing ? `Edit ${existing.couponName}` : "New policy"), status, form);
}

/** A Chart.js chart in `canvas`, destroyed when the page is left. */
function chart(canvas, config, charts) {
  const instance = new window.Chart(canvas, config);
  charts.push(instance);
  return instance;
}

/** The unique codes of a `UNIQUE` CODE policy: generation jobs with their progress, a form to
 * start one, and the CSV export. `refresh` re-reads the jobs. */
function uniqueCodes(policy) {
  const base = `/api/coupon-policies/${policy.id}/codes`;
  const message = h("div", { "aria-live": "assertive" });
  const body = h("tbody");
  const count = h("input", { id: "codes-count", type: "number", min: 1, max: 10000000, required: true });
  const prefix = h("input", { id: "codes-prefix", type: "text", maxlength: 10, pattern: "[A-Z0-9]*" });
  const download = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: async () => {
        download.disabled = true;
        try {
          const response = await fetch(`${base}?format=csv`, { headers: { Authorization: `Bearer ${token()}` } });
          if (!response.ok) throw new ApiError(response.status, null);
          const link = h("a", { href: URL.createObjectURL(await response.blob()), download: `policy-${policy.id}-codes.csv` });
          document.body.append(link);
          link.click();
          link.remove();
          message.replaceChildren(h("div", { class: "notice", role: "status" }, "The CSV of the codes is downloaded."));
        } catch (error) {
          message.replaceChildren(alertBox(error instanceof ApiError ? error.message : describe(0, null)));
        } finally {
          download.disabled = false;
        }
      },
    },
    "Download the codes (CSV)",
  );
  const refresh = async () => {
    const { jobs } = await api("GET", `${base}/jobs`);
    body.replaceChildren(
      ...jobs.map((job) =>
        h(
          "tr",
          {},
          h("td", {}, job.jobId),
          h("td", {}, job.state),
          h("td", {}, h("progress", { max: job.total, value: job.generated, "aria-label": `Job ${job.jobId} progress` }), ` ${formatNumber(job.generated)} / ${formatNumber(job.total)}`),
        ),
      ),
    );
  };
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const wanted = { count: Number(count.value) };
          if (prefix.value) wanted.prefix = prefix.value;
          const started = await api("POST", base, wanted);
          message.replaceChildren(h("div", { class: "notice", role: "status" }, `Job ${started.jobId} started.`));
          await refresh();
        } catch (error) {
          message.replaceChildren(alertBox(error.message));
        }
      },
    },
    h("div", {}, h("label", { for: "codes-count" }, "Codes to generate"), count),
    h("div", {}, h("label", { for: "codes-prefix" }, "Prefix (A-Z, 0-9)"), prefix),
    h("button", { type: "submit" }, "Generate"),
  );
  const section = h(
    "section",
    { "aria-labelledby": "codes-title" },
    h("h3", { id: "codes-title" }, "Unique codes"),
    message,
    form,
    h("div", { class: "toolbar" }, download),
    h(
      "table",
      {},
      h("caption", { class: "hint" }, "Generation jobs, newest first"),
      h("thead", {}, h("tr", {}, ["Job", "State", "Progress"].map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
  );
  return { section, refresh };
}

async function policyPage(id) {
  let policy;
  try {
    policy = await api("GET", `/api/coupon-policies/${id}`);
  } catch (error) {
    return show(h("h2", {}, `Policy ${id}`), alertBox(error.message));
  }
  const charts = [];
  const numbers = {
    issued: h("dd", { id: "live-issued" }, "…"),
    remaining: h("dd", { id: "live-remaining" }, "…"),
    state: h("dd", { id: "live-state" }, "…"),
    used: h("dd", {}, "…"),
  };
  const updated = h("p", { class: "hint", "aria-live": "off" });
  const liveCanvas = h("canvas", { id: "live-chart", role: "img", "aria-label": "Coupons issued over the last minutes" });
  const statusCanvas = h("canvas", { id: "status-chart", role: "img", "aria-label": "Coupons by status" });
  const message = h("div", { "aria-live": "assertive" });
  const deactivate = h("button", { type: "button", class: "danger", disabled: !policy.isActive }, "Deactivate…");
  const expire = h("input", { id: "expire-issued", type: "checkbox" });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "deactivate-title" },
    h("h3", { id: "deactivate-title" }, `Deactivate ${policy.couponName}?`),
    h("p", {}, "No coupon of it can be issued afterwards."),
    h("div", { class: "check" }, expire, h("label", { for: "expire-issued" }, "Also expire the coupons already issued and not used")),
    h(
      "div",
      { class: "toolbar" },
      h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: async () => {
            dialog.close();
            try {
              const answer = await api("DELETE", `/api/coupon-policies/${id}?expireIssued=${expire.checked}`);
              const expired = answer.expiredCoupons === undefined ? "" : ` ${answer.expiredCoupons} issued coupons expired.`;
              message.replaceChildren(h("div", { class: "notice", role: "status" }, `Deactivated.${expired}`));
              deactivate.disabled = true;
            } catch (error) {
              message.replaceChildren(alertBox(error.message));
            }
          },
        },
        "Deactivate",
      ),
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Keep it active"),
    ),
  );
  deactivate.addEventListener("click", () => dialog.showModal());

  const codes = policy.codeMode === "UNIQUE" ? uniqueCodes(policy) : null;
  show(
    h("h2", {}, `${policy.couponName} `, h("span", { class: "hint" }, `#${policy.id} · ${policy.distributionType}`)),
    message,
    h("div", { class: "toolbar" }, h("a", { class: "button secondary", href: `#/policies/${id}/edit` }, "Edit"), deactivate),
    h(
      "section",
      { "aria-labelledby": "live-title" },
      h("h3", { id: "live-title" }, "Live issuing"),
      h(
        "dl",
        { class: "grid" },
        h("div", { class: "card" }, h("dt", {}, "Issued"), numbers.issued),
        h("div", { class: "card" }, h("dt", {}, "Remaining"), numbers.remaining),
        h("div", { class: "card" }, h("dt", {}, "Issuing"), numbers.state),
        h("div", { class: "card" }, h("dt", {}, "Used"), numbers.used),
      ),
      updated,
    ),
    h(
      "div",
      { class: "charts" },
      h("div", { class: "chart" }, h("h3", {}, "Issued, refreshed every 2 s"), liveCanvas),
      h("div", { class: "chart" }, h("h3", {}, "Coupons by status"), statusCanvas),
    ),
    codes?.section,
    dialog,
  );

  const live = chart(
    liveCanvas,
    {
      type: "line",
      data: { labels: [], datasets: [{ label: "Issued", data: [], borderColor: "#0b5cad", tension: 0.2, pointRadius: 2 }] },
      options: { animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    },
    charts,
  );
  const byStatus = chart(
    statusCanvas,
    {
      type: "bar",
      data: {
        labels: ["Issued", "Reserved", "Used", "Expired", "Cancelled"],
        datasets: [{ label: "Coupons", data: [0, 0, 0, 0, 0], backgroundColor: "#0b5cad" }],
      },
      options: { animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    },
    charts,
  );

  const refresh = async () => {
    try {
      const stats = await api("GET", `/api/coupon-policies/${id}/statistics`);
      numbers.issued.textContent = formatNumber(stats.issuedCount);
      numbers.remaining.textContent = formatNumber(stats.remainingCount);
      const soldOut = stats.remainingCount === 0;
      numbers.state.textContent = soldOut ? "sold out" : policy.isActive && !deactivate.disabled ? "open" : "closed";
      numbers.state.className = soldOut ? "sold-out" : "";
      numbers.used.textContent = formatNumber(stats.usedCount);
      const now = new Date().toLocaleTimeString("en-GB", { timeZone: "UTC" });
      live.data.labels.push(now);
      live.data.datasets[0].data.push(stats.issuedCount);
      if (live.data.labels.length > 90) {
        live.data.labels.shift();
        live.data.datasets[0].data.shift();
      }
      live.update();
      byStatus.data.datasets[0].data = [
        stats.issuedCount,
        stats.reservedCount,
        stats.usedCount,
        stats.expiredCount,
        stats.cancelledCount,
      ];
      byStatus.update();
      updated.textContent = `Updated ${now} UTC`;
      await codes?.refresh();
    } catch (error) {
      updated.replaceChildren(alertBox(error.message));
    }
  };
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  leavePage = () => {
    clearInterval(timer);
    for (const c of charts) c.destroy();
  };
}

// ---- daily statistics -----------------------------------------------------------------------

const isoDay = (date) => date.toISOString().slice(0, 10);

async function dailyPage() {
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 86_400_000);
  const from = h("input", { id: "from", type: "date", value: isoDay(weekAgo), required: true });
  const to = h("input", { id: "to", type: "date", value: isoDay(today), required: true });
  const status = h("div", { "aria-live": "polite" });
  const charts = [];
  const daysCanvas = h("canvas", { id: "daily-chart", role: "img", "aria-label": "Coupons issued and used per day" });
  const hoursCanvas = h("canvas", { id: "hourly-chart", role: "img", "aria-label": "Coupons issued and used per hour of the day" });
  const perDay = chart(
    daysCanvas,
    {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: { animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    },
    charts,
  );
  const perHour = chart(
    hoursCanvas,
    {
      type: "line",
      data: { labels: [...Array(24).keys()].map(String), datasets: [] },
      options: { animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    },
    charts,
  );
  const load = async () => {
    status.replaceChildren();
    try {
      const answer = await api("GET", `/api/statistics/daily?from=${from.value}&to=${to.value}`);
      const days = answer.days;
      const series = (key) => days.map((d) => d[key]);
      perDay.data.labels = days.map((d) => d.date);
      perDay.data.datasets = [
        { label: "Issued", data: series("totalIssued"), backgroundColor: "#0b5cad" },
        { label: "Used", data: series("totalUsed"), backgroundColor: "#05603a" },
        { label: "Reserved", data: series("totalReserved"), backgroundColor: "#b54708" },
        { label: "Expired", data: series("totalExpired"), backgroundColor: "#57606a" },
      ];
      perDay.update();
      const byHour = (key) => [...Array(24).keys()].map((hour) => days.reduce((sum, d) => sum + (d[key]?.[hour] ?? 0), 0));
      perHour.data.datasets = [
        { label: "Issued", data: byHour("issueByHour"), borderColor: "#0b5cad" },
        { label: "Used", data: byHour("usageByHour"), borderColor: "#05603a" },
      ];
      perHour.update();
      status.replaceChildren(h("p", { class: "hint" }, `${days.length} days with statistics from ${from.value} to ${to.value}.`));
    } catch (error) {
      status.replaceChildren(alertBox(error.message));
    }
  };
  show(
    h("h2", {}, "Daily statistics"),
    h(
      "form",
      { class: "filters", onsubmit: (event) => (event.preventDefault(), load()) },
      h("div", {}, h("label", { for: "from" }, "From"), from),
      h("div", {}, h("label", { for: "to" }, "To"), to),
      h("button", { type: "submit" }, "Show"),
    ),
    status,
    h(
      "div",
      { class: "charts" },
      h("div", { class: "chart" }, h("h3", {}, "Per day"), daysCanvas),
      h("div", { class: "chart" }, h("h3", {}, "Per hour of the day (UTC), over the range"), hoursCanvas),
    ),
  );
  leavePage = () => charts.forEach((c) => c.destroy());
  await load();
}

// ---- a user's wallet ------------------------------------------------------------------------

/** A modal form: `fields` [name, label, type], submitted to `onSubmit(values)`. */
function formDialog(title, fields, submitLabel, onSubmit) {
  const inputs = fields.map(([name, label, type]) => [name, label, h("input", { id: `dialog-${name}`, name, type, required: true, step: type === "number" ? "any" : undefined })]);
  const status = h("div", { "aria-live": "assertive" });
  const dialog = h("dialog", { "aria-labelledby": "dialog-title" });
  dialog.append(
    h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          const values = Object.fromEntries(inputs.map(([name, , input]) => [name, input.type === "number" ? Number(input.value) : input.value]));
          try {
            await onSubmit(values);
            dialog.close();
            dialog.remove();
          } catch (error) {
            status.replaceChildren(alertBox(error.message));
          }
        },
      },
      h("h3", { id: "dialog-title" }, title),
      status,
      inputs.map(([name, label, input]) => [h("label", { for: `dialog-${name}` }, label), input]),
      h(
        "div",
        { class: "toolbar" },
        h("button", { type: "submit" }, submitLabel),
        h("button", { type: "button", class: "secondary", onclick: () => (dialog.close(), dialog.remove()) }, "Cancel"),
      ),
    ),
  );
  document.body.append(dialog);
  dialog.showModal();
}

async function walletPage(userId) {
  const input = h("input", { id: "user-id", type: "number", min: 1, required: true, value: userId ?? "" });
  const lookup = h(
    "form",
    { class: "filters", role: "search", onsubmit: (event) => (event.preventDefault(), (location.hash = `#/wallet/${input.value}`)) },
    h("div", {}, h("label", { for: "user-id" }, "User id"), input),
    h("button", { type: "submit" }, "Show wallet"),
  );
  if (userId === null) return show(h("h2", {}, "A user's wallet"), lookup);
  const message = h("div", { "aria-live": "assertive" });
  const body = h("tbody");
  const load = async () => {
    const coupons = [];
    let cursor = null;
    for (let page = 0; page < 20; page += 1) {
      const query = cursor === null ? "limit=100" : `limit=100&cursor=${cursor}`;
      const answer = await api("GET", `/api/admin/users/${userId}/coupons?${query}`);
      coupons.push(...answer.coupons);
      if (!answer.hasMore) break;
      cursor = answer.nextCursor;
    }
    body.replaceChildren(
      ...coupons.map((c) => {
        const actions = h("td", {});
        if (c.status === "ISSUED") {
          actions.append(
            h(
              "button",
              {
                type: "button",
                class: "secondary",
                "aria-label": `Revoke coupon ${c.couponId}`,
                onclick: () =>
                  formDialog(`Revoke coupon ${c.couponId}`, [["reason", "Reason", "text"], ["revokedBy", "Your name", "text"]], "Revoke", async (values) => {
                    await api("POST", `/api/admin/coupons/${c.couponId}/revoke`, values);
                    message.replaceChildren(h("div", { class: "notice", role: "status" }, `Coupon ${c.couponId} revoked.`));
                    await load();
                  }),
              },
              "Revoke…",
            ),
            " ",
            h(
              "button",
              {
                type: "button",
                class: "secondary",
                "aria-label": `Use coupon ${c.couponId} for an order`,
                onclick: () =>
                  formDialog(
                    `Use coupon ${c.couponId} for an order`,
                    [["orderId", "Order id", "text"], ["orderAmount", "Order amount", "number"], ["usedBy", "Your name", "text"], ["reason", "Reason", "text"]],
                    "Use",
                    async (values) => {
                      await api("POST", `/api/admin/coupons/${c.couponId}/use`, values);
                      message.replaceChildren(h("div", { class: "notice", role: "status" }, `Coupon ${c.couponId} used for order ${values.orderId}.`));
                      await load();
                    },
                  ),
              },
              "Use…",
            ),
          );
        }
        return h(
          "tr",
          {},
          h("td", {}, c.couponId),
          h("td", {}, h("a", { href: `#/policies/${c.policyId}` }, c.couponName)),
          h("td", {}, c.status),
          h("td", {}, formatDate(c.issuedAt)),
          h("td", {}, formatDate(c.expiryDate)),
          actions,
        );
      }),
    );
  };
  show(
    h("h2", {}, `Wallet of user ${userId}`),
    lookup,
    message,
    h(
      "table",
      {},
      h("caption", { class: "hint" }, `Coupons of user ${userId}, newest first`),
      h("thead", {}, h("tr", {}, ["Coupon", "Policy", "Status", "Issued", "Valid until", "Support"].map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
  );
  try {
    await load();
  } catch (error) {
    message.replaceChildren(alertBox(error.message));
  }
}

// ---- scheduler jobs -------------------------------------------------------------------------

async function jobsPage() {
  const message = h("div", { "aria-live": "assertive" });
  const list = h("div", {});
  const load = async () => {
    const { jobs } = await api("GET", "/api/admin/jobs");
    list.replaceChildren(
      ...jobs.map((job) => {
        const run = h(
          "button",
          {
            type: "button",
            "aria-label": `Run ${job.name} now`,
            onclick: async () => {
              run.disabled = true;
              try {
                const report = await api("POST", `/api/admin/jobs/${job.name}/run`);
                message.replaceChildren(
                  h("div", { class: "notice", role: "status" }, `${report.job} ran: ${report.affected} rows changed in ${report.batches} batches.`),
                );
                await load();
              } catch (error) {
                message.replaceChildren(alertBox(error.message));
                run.disabled = false;
              }
            },
          },
          "Run now",
        );
        return h(
          "section",
          { class: "card", "aria-labelledby": `job-${job.name}` },
          h("div", { class: "toolbar" }, h("h3", { id: `job-${job.name}` }, job.name), run),
          job.lastRuns.length === 0
            ? h("p", { class: "hint" }, "No run recorded yet.")
            : h(
                "table",
                {},
                h("caption", { class: "hint" }, `Latest runs of ${job.name}, newest first`),
                h("thead", {}, h("tr", {}, ["Started", "Finished", "Trigger", "Outcome", "Rows changed"].map((c) => h("th", { scope: "col" }, c)))),
                h(
                  "tbody",
                  {},
                  job.lastRuns.map((r) =>
                    h("tr", {}, h("td", {}, formatDate(r.startedAt)), h("td", {}, formatDate(r.finishedAt)), h("td", {}, r.trigger), h("td", {}, r.outcome), h("td", {}, r.affected)),
                  ),
                ),
              ),
        );
      }),
    );
  };
  show(h("h2", {}, "Scheduler jobs"), message, list);
  try {
    await load();
  } catch (error) {
    message.replaceChildren(alertBox(error.message));
  }
}

// ---- dead letters ---------------------------------------------------------------------------

/** A modal question: `onConfirm` runs when the person picks `actionLabel`. */
function confirmDialog(title, text, actionLabel, onConfirm) {
  const dialog = h("dialog", { "aria-labelledby": "confirm-title" });
  const close = () => (dialog.close(), dialog.remove());
  dialog.append(
    h("h3", { id: "confirm-title" }, title),
    h("p", {}, text),
    h(
      "div",
      { class: "toolbar" },
      h("button", { type: "button", onclick: async () => (close(), await onConfirm()) }, actionLabel),
      h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"),
    ),
  );
  document.body.append(dialog);
  dialog.showModal();
}

async function dlqPage() {
  const topic = h("input", { id: "dlq-topic", type: "text", placeholder: "all consumed topics" });
  const reason = h("input", { id: "dlq-reason", type: "text", placeholder: "all reasons" });
  const message = h("div", { "aria-live": "assertive" });
  const body = h("tbody");
  const count = h("p", { class: "hint", "aria-live": "polite" });
  const load = async () => {
    const query = new URLSearchParams();
    if (topic.value.trim()) query.set("topic", topic.value.trim());
    if (reason.value.trim()) query.set("reason", reason.value.trim());
    const { letters } = await api("GET", `/api/admin/dlq?${query}`);
    count.textContent = `${letters.length} dead letters`;
    body.replaceChildren(
      ...letters.map((l) => {
        const where = `${l.topic} partition ${l.partition} offset ${l.offset}`;
        const replay = h(
          "button",
          {
            type: "button",
            class: "secondary",
            disabled: !l.replayable,
            "aria-label": `Replay ${where}`,
            onclick: () =>
              confirmDialog(
                `Replay ${where}?`,
                "The record is produced again on its topic, and the consumers apply it like any record. Replay it once whatever refused it is put right.",
                "Replay",
                async () => {
                  try {
                    const done = await api("POST", "/api/admin/dlq/replay", { topic: l.topic, partition: l.partition, offset: l.offset });
                    message.replaceChildren(h("div", { class: "notice", role: "status" }, `Replayed ${where} as offset ${done.newOffset}.`));
                  } catch (error) {
                    message.replaceChildren(alertBox(error.message));
                  }
                },
              ),
          },
          l.replayable ? "Replay…" : "Not replayable",
        );
        return h(
          "tr",
          {},
          h("td", {}, l.topic),
          h("td", {}, l.partition),
          h("td", {}, l.offset),
          h("td", {}, l.reason),
          h("td", {}, formatDate(l.failedAt)),
          h("td", {}, l.eventId ?? "—"),
          h("td", {}, replay),
        );
      }),
    );
  };
  const search = async (event) => {
    event?.preventDefault();
    try {
      await load();
    } catch (error) {
      message.replaceChildren(alertBox(error.message));
    }
  };
  show(
    h("h2", {}, "Dead letters"),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: search },
      h("div", {}, h("label", { for: "dlq-topic" }, "Topic"), topic),
      h("div", {}, h("label", { for: "dlq-reason" }, "Reason"), reason),
      h("button", { type: "submit" }, "Show letters"),
    ),
    message,
    count,
    h(
      "table",
      {},
      h("caption", { class: "hint" }, "Records the consumers refused, by topic, partition and offset"),
      h("thead", {}, h("tr", {}, ["Topic", "Partition", "Offset", "Reason", "Failed", "Event", "Replay"].map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
  );
  await search();
}

// ---- start ----------------------------------------------------------------------------------

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
