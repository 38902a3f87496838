// Loads the live seat map in a real, headless Chromium (Debian's, driven by
// playwright-core) while tests/api/browser.rs runs a small drop, and checks what a
// person would see: the seats turn pending, then booked, and the counters move; or, on
// an event with holds, the seats turn held, in their own colour, then free again when
// their holds expire.
//
// Usage: node seatmap.mjs <page url> <screenshot dir>; env SEATS (seats in the event),
// MODE (`drop`, the default, or `holds`), CHROMIUM (the browser binary, default
// /usr/bin/chromium).
//
// It talks with the Rust test over stdio, one line at a time. Both modes:
//   prints READY        the page shows every seat, all available, and the counters
// MODE=drop:
//   reads  EXPECT <n>   the drop is over: n seats were won, each by a one-seat claim
//   prints PENDING      the page shows exactly those n seats pending (screenshot saved)
//   prints BOOKED       after the reconciler ran: the n seats booked, nothing pending
// MODE=holds (an event with a short hold; the reconciler runs):
//   reads  EXPECT <n>   n one-seat claims were made and nobody will check out
//   prints HELD         the page shows exactly those n seats held, in a colour of their
//                       own that the legend shows too (screenshot saved)
//   prints EXPIRED      the holds expired: every seat available again, nothing held
// Any failure exits non-zero with the reason on stderr.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, shots] = process.argv.slice(2);
const seats = Number(process.env.SEATS);
const mode = process.env.MODE || "drop";
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const WAIT = { timeout: 30_000, polling: 50 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 640 }, reducedMotion: "reduce" });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  // The counters and the grid's own counts (body data-*) must agree with each other.
  const shows = (want) =>
    page.waitForFunction((want) => {
      const text = (id) => document.getElementById(id).textContent;
      return Object.entries(want).every(([k, v]) =>
        k.startsWith("cells_")
          ? document.querySelectorAll(`.seat.${k.slice(6)}`).length === v
          : text(k) === String(v));
    }, want, WAIT);

  // The seats held for their checkout: shown held, in a colour none of the other
  // statuses has and the legend's held swatch has; then, once their holds expire
  // (nobody checks out), available again.
  async function holds(n) {
    await shows({
      cells_held: n, cells_pending: 0, cells_booked: 0, cells_available: seats - n,
      held: n, pending: 0, booked: 0, available: seats - n,
    });
    const colours = await page.evaluate(() => {
      const bg = (selector) => getComputedStyle(document.querySelector(selector)).backgroundColor;
      return {
        seat: bg(".seat.held"),
        legend: bg(".swatch.held"),
        others: ["available", "pending", "booked"].map((k) => bg(`.swatch.${k}`)),
      };
    });
    if (colours.seat === "rgba(0, 0, 0, 0)") throw new Error("held seats have no colour");
    if (colours.seat !== colours.legend) {
      throw new Error(`a held seat is ${colours.seat}, the legend says ${colours.legend}`);
    }
    if (colours.others.includes(colours.seat)) {
      throw new Error(`held (${colours.seat}) shares its colour with another status: ${colours.others}`);
    }
    await page.screenshot({ path: `${shots}/seatmap-held.png`, fullPage: true });
    console.log("HELD");

    await shows({
      cells_available: seats, cells_held: 0, cells_pending: 0, cells_booked: 0,
      available: seats, held: 0, pending: 0, booked: 0,
    });
    await page.screenshot({ path: `${shots}/seatmap-expired.png`, fullPage: true });
    console.log("EXPIRED");
  }

  await page.goto(url);
  await shows({ cells_available: seats, available: seats, pending: 0, held: 0, booked: 0, seats_total: seats });
  const live = await page.textContent("#connection");
  if (live !== "live") throw new Error(`connection badge says ${live}`);
  console.log("READY");

  const expect = (await lines.next()).value?.match(/^EXPECT (\d+)$/);
  if (!expect) throw new Error("expected EXPECT <n> on stdin");
  const won = Number(expect[1]);
  if (mode === "holds") {
    await holds(won);
  } else {
    await shows({
      cells_pending: won, cells_available: seats - won, cells_booked: 0,
      pending: won, available: seats - won, claims_total: won, outbox_length: won,
    });
    await page.screenshot({ path: `${shots}/seatmap-pending.png`, fullPage: true });
    console.log("PENDING");

    await shows({
      cells_booked: won, cells_pending: 0, cells_available: seats - won,
      booked: won, pending: 0, outbox_length: 0,
    });
    await page.screenshot({ path: `${shots}/seatmap-booked.png`, fullPage: true });
  }
  if (errors.length) throw new Error(`the page logged errors: ${errors.join("; ")}`);
  if (mode !== "holds") console.log("BOOKED");
} finally {
  stdin.close();
  await browser.close();
}
