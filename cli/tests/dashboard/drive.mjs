// Drives the hub's dashboard in a real browser for cli/tests/dashboard.rs: Playwright (playwright-core, which
// `.ci/peers` installs from npm) runs Debian's Chromium headless, and the page is used as a person would use it.
//
//   node drive.mjs DASHBOARD_URL PRODUCTPAGE_URL SCREENSHOT
//
// NODE_PATH names the node_modules holding playwright-core; CHROMIUM the browser (default /usr/bin/chromium).
// Each step waits, with Playwright's polling, for what the page must show; then the driver sends a guest's
// request to PRODUCTPAGE_URL (a sampled trace of its own), opens that request's trace from the trace list, and
// takes a full-page screenshot. It prints one JSON object on stdout, what the page showed, for the test to
// judge; when a step's wait runs out it writes the screenshot anyway, says on stderr which step and what the
// page showed instead, and exits 1.

import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";

const [dashboard, productpage, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node drive.mjs DASHBOARD_URL PRODUCTPAGE_URL SCREENSHOT");
  process.exit(2);
}
// playwright-core is found through NODE_PATH (outside the repository: `.ci/peers` installs it).
const { chromium } = createRequire(import.meta.url)("playwright-core");

// The page polls the hub every two seconds; the mesh's slowest part (reviews v3, a tenth of the traffic) may
// take a while on a loaded machine.
const WAIT = 120_000;
// The workloads the graph must show, each with requests flowing into it.
const NODES = [
  "bookinfo/productpage/v1",
  "bookinfo/details/v1",
  "bookinfo/ratings/v1",
  "bookinfo/reviews/v1",
  "bookinfo/reviews/v2",
  "bookinfo/reviews/v3",
];

const started = Date.now();
const log = (msg) => console.error(`drive: ${((Date.now() - started) / 1000).toFixed(1)} s: ${msg}`);
// A driver that hangs would hang the test: give up well after every step's own wait.
setTimeout(() => {
  console.error("drive: gave up after 6 minutes");
  process.exit(1);
}, 6 * 60_000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root, Chromium needs --no-sandbox; the machine's network is closed, so nothing in the background.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const errors = [];
page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
page.on("console", (m) => {
  if (m.type() === "error") errors.push(`console: ${m.text()} (${m.location().url})`);
});

/** Fails the driver saying why, with what the page showed and a screenshot of it. */
async function fail(why) {
  console.error(`drive: ${why}`);
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  const text = await page.locator("main").innerText({ timeout: 2_000 }).catch((err) => `(no page: ${err.message.split("\n")[0]})`);
  console.error(`drive: the page showed (screenshot ${screenshot}):\n${text}`);
  if (errors.length) console.error(`drive: the page's errors:\n${errors.join("\n")}`);
  await browser.close();
  process.exit(1);
}

/** Runs `wait`, which waits for what the page must show; when it never does, fails the driver saying so. */
async function step(what, wait) {
  try {
    await wait();
    log(what);
  } catch (e) {
    await fail(`the page never showed ${what}: ${e.message.split("\n")[0]}`);
  }
}

/** The rows of table `id`: each row's data- attributes and its cells' text. */
const rows = (id) =>
  page.locator(`#${id} tbody tr`).evaluateAll((trs) =>
    trs.map((tr) => ({ ...tr.dataset, selected: tr.classList.contains("selected"), cells: [...tr.cells].map((c) => c.textContent.trim()) })),
  );

await page.goto(dashboard).catch((e) => fail(`cannot load ${dashboard}: ${e.message.split("\n")[0]}`));

// 1. The service graph: every workload, and requests per second on an edge into each.
for (const id of NODES) {
  await step(`the graph's node ${id}`, () => page.locator(`#graph g.node[data-id="${id}"]`).waitFor({ timeout: WAIT }));
}
await step("a non-zero rate on an edge into every node", () =>
  page.waitForFunction(
    (nodes) => {
      const edges = [...document.querySelectorAll("#graph g.edge")];
      const busy = (id) => edges.some((e) => e.dataset.destination === id && parseFloat(e.querySelector("text")?.textContent) > 0);
      return nodes.every(busy);
    },
    NODES,
    { timeout: WAIT, polling: 250 },
  ),
);
const graph = {
  nodes: await page.locator("#graph g.node").evaluateAll((gs) =>
    gs.map((g) => ({ id: g.dataset.id, text: [...g.querySelectorAll("text")].map((t) => t.textContent) })),
  ),
  edges: await page.locator("#graph g.edge").evaluateAll((gs) =>
    gs.map((g) => ({ ...g.dataset, label: g.querySelector("text")?.textContent ?? "" })),
  ),
};

// 2. A guest's request of the test's own, traced with an id nobody else uses.
const traceId = randomBytes(16).toString("hex");
const answer = await page.request
  .get(productpage, {
    headers: { "x-user": "guest", traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
    timeout: 10_000,
  })
  .catch((e) => fail(`productpage (${productpage}) did not answer the guest: ${e.message.split("\n")[0]}`));
const guest = { trace_id: traceId, status: answer.status(), body: await answer.text() };
log(`sent a guest's request: ${guest.status}, trace ${traceId}`);

// 3. The denial with its rule among the decisions.
await step("the guests' denial (rule no-guests) in the decisions table", () =>
  page.locator('#decisions tbody tr[data-result="deny"][data-rule="no-guests"]').waitFor({ timeout: WAIT }),
);
const decisions = await rows("decisions");
const recent = await rows("recent");

// 4. That request's trace, clicked in the trace list: its waterfall opens with the five spans of its way
// (productpage's, its calls to details and reviews as it made them and as they served them). The list holds the newest ten traces, so the row is there for a few seconds only: click it as
// soon as it shows.
await step(`the trace ${traceId} in the trace list, clicked`, () =>
  page.locator(`#traces tbody tr[data-trace="${traceId}"]`).click({ timeout: WAIT }),
);
await step(`the waterfall of trace ${traceId} with five spans, of productpage, details and reviews`, () =>
  page.waitForFunction(
    (id) => {
      const w = document.getElementById("waterfall");
      const spans = [...w.querySelectorAll(".row")];
      const workloads = new Set(spans.map((r) => r.dataset.workload));
      return w.dataset.trace === id && spans.length >= 5 && ["productpage", "details", "reviews"].every((x) => workloads.has(x));
    },
    traceId,
    { timeout: WAIT, polling: 250 },
  ),
);
const waterfall = {
  trace: await page.locator("#waterfall").getAttribute("data-trace"),
  title: await page.locator("#waterfall h3").innerText(),
  spans: await page.locator("#waterfall .row").evaluateAll((rs) =>
    rs.map((r) => ({ ...r.dataset, text: r.innerText.replace(/\s+/g, " ").trim() })),
  ),
};
const traces = await rows("traces");

// 5. The rest of the page, and the screenshot of it all.
await step("the bot's rate limit", () =>
  page.locator("#limits tbody tr", { hasText: "bookinfo/details-per-user" }).waitFor({ timeout: WAIT }),
);
const result = {
  graph,
  guest,
  decisions,
  recent,
  traces,
  waterfall,
  services: await rows("services"),
  limits: await rows("limits"),
  adapters: await rows("adapters"),
  status: await page.locator("#status").innerText(),
  browser: browser.version(),
  errors,
};
await page.screenshot({ path: screenshot, fullPage: true });
log(`screenshot ${screenshot}`);
await browser.close();
console.log(JSON.stringify(result));
