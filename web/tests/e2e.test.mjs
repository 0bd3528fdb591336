// The web app end to end: the real `imgsearch` binary indexes ../shared/photos/caltech20
// into a fresh database, `imgsearch serve` serves it, and headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) uses the UI like a person would.
//
//   node --test web/tests/            (ctest runs it as web_e2e, label "web")
//
// Environment (all optional): IMGSEARCH_BIN (default build/imgsearch), IMGSEARCH_SHARED_DIR
// (default ../shared next to the checkout), IMGSEARCH_ARTIFACTS (default build/test-artifacts:
// screenshots land there), CHROMIUM (default /usr/bin/chromium), IMGSEARCH_DB (reuse an
// existing caltech20 database instead of indexing one).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodePng } from './png.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const BIN = process.env.IMGSEARCH_BIN || path.join(repo, 'build', 'imgsearch');
const SHARED = process.env.IMGSEARCH_SHARED_DIR || path.resolve(repo, '..', 'shared');
const ARTIFACTS = process.env.IMGSEARCH_ARTIFACTS || path.join(repo, 'build', 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CALTECH = path.join(SHARED, 'photos', 'caltech20');
const WEB_DIST = path.join(repo, 'web', 'dist');
const FIRST_RENDER_BAR_MS = 1000;

let chromium;
let tmp, db, server, baseUrl, context;
const serverLog = [];

function need(cond, what) {
  if (!cond) throw new Error(`${what} (run scripts/setup.sh, which installs and builds everything)`);
}

async function startServer() {
  const child = spawn(BIN, ['serve', '--db', db, '--port', '0', '--host', '127.0.0.1', '--web-dir', WEB_DIST, '--quiet'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.on('data', (d) => serverLog.push(d.toString()));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve printed no URL: ${out}${serverLog.join('')}`)), 60000);
    child.stdout.on('data', (d) => {
      out += d.toString();
      const m = /Open (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}${serverLog.join('')}`)));
  });
  return { child, url: url.replace(/\/$/, '') };
}

async function waitFor(fn, what, timeoutMs = 30000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function newPage() {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error('console:', m.text());
  });
  return page;
}

async function openApp(page, hash = '') {
  await page.goto(`${baseUrl}/${hash}`);
  await page.waitForFunction(() => window.__imgsearch?.state.ready && window.__imgsearch.state.mapPoints);
}

const appState = (page) =>
  page.evaluate(() => {
    const s = window.__imgsearch.state;
    return {
      query: s.query && { kind: s.query.kind, id: s.query.id ?? null, name: s.query.name ?? null },
      results: s.results.map((h) => ({ id: h.id, class: h.class, score: h.score })),
      selected: s.selected,
      searches: s.searches,
      loading: s.loading,
      error: s.error,
      map: { ...window.__imgsearch.map },
    };
  });

// Waits for the next search to finish and the map to settle on its results.
async function waitForSearch(page, before) {
  await page.waitForFunction(
    (n) => window.__imgsearch.state.searches > n && !window.__imgsearch.state.loading && !window.__imgsearch.map.animating,
    before,
  );
  return appState(page);
}

const shot = (page, name, target) => (target ?? page).screenshot({ path: path.join(ARTIFACTS, name) });

// Pixels in a screenshot of the map that are white: the highlight rings (labels are greyer).
function whitePixels(png) {
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4)
    if (png.data[i] > 248 && png.data[i + 1] > 248 && png.data[i + 2] > 248) n++;
  return n;
}

before(async () => {
  need(fs.existsSync(BIN), `no imgsearch binary at ${BIN}`);
  need(fs.existsSync(path.join(WEB_DIST, 'index.html')), `the web UI is not built (${WEB_DIST})`);
  need(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  need(fs.existsSync(CALTECH), `no photos at ${CALTECH}`);
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    need(false, 'playwright-core is not installed in web/node_modules (npm ci in web/)');
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imgsearch-web-'));
  db = process.env.IMGSEARCH_DB || path.join(tmp, 'cal.imgsearch');
  if (!process.env.IMGSEARCH_DB) {
    const t0 = Date.now();
    const r = spawnSync(BIN, ['index', CALTECH, '--db', db, '--quiet'], { encoding: 'utf8', timeout: 600000 });
    assert.equal(r.status, 0, `index failed: ${r.stderr}`);
    console.log(`indexed caltech20 in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  ({ child: server, url: baseUrl } = await startServer());
  // The layout is computed once by the server (and cached); the page's first render is
  // measured against a ready server.
  await waitFor(async () => (await fetch(`${baseUrl}/api/map`)).status === 200, 'the map layout', 300000);
  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await context?.close();
  if (server) {
    server.kill('SIGTERM');
    await new Promise((r) => (server.exitCode !== null ? r() : server.on('exit', r)));
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (serverLog.length) console.log('server stderr:\n' + serverLog.join('').slice(-4000));
});

describe('imgsearch web app', () => {
  test('first render with the 600-image collection: overview, empty state, map', async () => {
    const page = await newPage();
    const t0 = Date.now();
    await openApp(page);
    const wall = Date.now() - t0;
    const m = await page.evaluate(() => ({
      firstRender: window.__imgsearch.firstRenderMs,
      mapReady: window.__imgsearch.mapReadyMs,
      nav: performance.getEntriesByType('navigation')[0]?.toJSON(),
      map: { ...window.__imgsearch.map },
    }));
    console.log(
      `first render with 600 images: ${m.mapReady.toFixed(0)} ms from navigation start to the map drawn ` +
        `(DOMContentLoaded ${m.nav?.domContentLoadedEventEnd?.toFixed(0)} ms; goto -> ready ${wall} ms wall; ` +
        `renderer ${m.map.renderer}, map frame ${m.map.lastFrameMs.toFixed(1)} ms)`,
    );
    assert.ok(m.mapReady > 0 && m.mapReady < FIRST_RENDER_BAR_MS, `first render ${m.mapReady} ms >= ${FIRST_RENDER_BAR_MS}`);
    assert.equal(m.map.points, 600);
    assert.equal(m.map.drawnPoints, 600);
    assert.equal(m.map.renderer, 'webgl');
    // Overview and the empty state say what to do.
    const overview = await page.textContent('#overview');
    const stats = await (await fetch(`${baseUrl}/api/stats`)).json();
    for (const s of ['600', 'images', stats.model, stats.layer, 'layer', stats.index, 'index', stats.metric, 'folders'])
      assert.ok(overview.includes(s), `${s} not in the overview: ${overview}`);
    const empty = await page.textContent('#empty');
    assert.match(empty, /Drop a photo here/);
    assert.match(empty, /paste/);
    assert.equal(await page.locator('.legend button').count(), 20);
    await page.waitForFunction(() => [...document.querySelectorAll('.sample-row img')].every((i) => i.complete));
    await shot(page, 'web-01-start.png');
    await page.close();
  });

  test('upload a llama photo: llamas first, query pinned, neighbours highlighted on the map', async () => {
    const page = await newPage();
    await openApp(page);
    const mapBox = page.locator('.map-wrap');
    const before = decodePng(await mapBox.screenshot());
    await page.setInputFiles('#file', path.join(CALTECH, 'llama', 'image_0003.jpg'));
    const s = await waitForSearch(page, 0);
    assert.equal(s.error, null);
    assert.equal(s.query.kind, 'upload');
    assert.equal(s.results.length, 24);
    assert.equal(s.results[0].class, 'llama', JSON.stringify(s.results.slice(0, 5)));
    const llamasTop5 = s.results.slice(0, 5).filter((r) => r.class === 'llama').length;
    assert.ok(llamasTop5 >= 4, `only ${llamasTop5} llamas in the top 5`);
    // The grid shows thumbnails, scores, names; the query is pinned.
    await page.waitForFunction(() => [...document.querySelectorAll('.card img')].slice(0, 8).every((i) => i.complete && i.naturalWidth > 0));
    assert.equal(await page.locator('.card').count(), 24);
    assert.match(await page.textContent('.card .name'), /image_\d+\.jpg/);
    assert.match(await page.textContent('.card .score'), /^0\.\d{3}$|^1\.000$/);
    assert.match(await page.textContent('#query'), /image_0003\.jpg/);
    assert.match(await page.textContent('#query'), /Your photo/);
    // Map: all 24 neighbours highlighted, visible as white rings in the pixels: count the
    // neighbours with ring-white pixels around their position, before and after.
    assert.equal(s.map.neighbours, 24);
    assert.equal(s.map.highlighted, 24);
    const afterPng = decodePng(await mapBox.screenshot());
    const ringed = async (png) => {
      const dpr = png.width / (await mapBox.boundingBox()).width;
      let n = 0;
      for (const r of s.results) {
        const [px, py] = await page.evaluate((id) => window.__imgsearch.screenPosition(id), r.id);
        let bright = 0;
        for (let dy = -10; dy <= 10; dy++)
          for (let dx = -10; dx <= 10; dx++) {
            const x = Math.round((px + dx) * dpr), y = Math.round((py + dy) * dpr);
            if (x < 0 || y < 0 || x >= png.width || y >= png.height) continue;
            const i = (y * png.width + x) * 4;
            if (png.data[i] > 248 && png.data[i + 1] > 248 && png.data[i + 2] > 248) bright++;
          }
        if (bright >= 4) n++;
      }
      return n;
    };
    const ringedAfter = await ringed(afterPng);
    const w0 = whitePixels(before), w1 = whitePixels(afterPng);
    console.log(
      `map pixels: ${w0} near-white before the search, ${w1} after; ${ringedAfter} of 24 neighbours show a ring`,
    );
    assert.ok(w0 < 20, `white pixels before any search: ${w0}`);
    assert.ok(ringedAfter >= 22, `only ${ringedAfter} of 24 neighbours ringed`);
    await shot(page, 'web-02-upload-results.png');
    await shot(page, 'web-03-map-highlight.png', mapBox);
    await page.close();
  });

  test('click a result: searches from it (live), new results, URL updated', async () => {
    const page = await newPage();
    await openApp(page);
    await page.setInputFiles('#file', path.join(CALTECH, 'sunflower', 'image_0005.jpg'));
    const s1 = await waitForSearch(page, 0);
    assert.equal(s1.results[0].class, 'sunflower');
    // Click the fourth result.
    const card = page.locator('.card').nth(3);
    const id = Number(await card.getAttribute('data-id'));
    await card.click();
    const s2 = await waitForSearch(page, s1.searches);
    assert.equal(s2.query.kind, 'id');
    assert.equal(s2.query.id, id);
    assert.ok(!s2.results.some((r) => r.id === id), 'the query image is pinned, not repeated in the results');
    assert.notDeepEqual(s2.results.map((r) => r.id), s1.results.map((r) => r.id));
    assert.equal(new URL(page.url()).hash, `#id=${id}`);
    assert.ok(s2.map.queryShown, 'the query point is marked on the map');
    assert.equal(s2.map.highlighted, 25);
    // Browser back returns to the upload's results? The upload is not in the URL; back to the start.
    // A deep link works on its own:
    const page2 = await newPage();
    await openApp(page2, `#id=${id}`);
    const s3 = await waitForSearch(page2, 0);
    assert.deepEqual(s3.results.map((r) => r.id), s2.results.map((r) => r.id));
    await page2.close();
    await shot(page, 'web-04-click-result.png');
    await page.close();
  });

  test('keyboard: arrows move the selection, Enter searches from it', async () => {
    const page = await newPage();
    await openApp(page);
    const firstId = (await page.evaluate(() => window.__imgsearch.state.mapPoints[0].id));
    await page.evaluate((id) => window.__imgsearch.searchById(id), firstId);
    const s1 = await waitForSearch(page, 0);
    await page.keyboard.press('ArrowRight'); // selects #1
    await page.keyboard.press('ArrowRight'); // #2
    await page.keyboard.press('ArrowDown'); // one row down
    const cols = await page.evaluate(() => {
      const cards = [...document.querySelectorAll('.card')];
      return cards.filter((c) => c.offsetTop === cards[0].offsetTop).length;
    });
    const s2 = await appState(page);
    assert.equal(s2.selected, 1 + cols);
    assert.equal(await page.getAttribute(`.card[data-index="${1 + cols}"]`, 'aria-selected'), 'true');
    await page.keyboard.press('ArrowLeft');
    assert.equal((await appState(page)).selected, cols);
    await page.keyboard.press('ArrowUp');
    assert.equal((await appState(page)).selected, 0);
    await page.keyboard.press('ArrowRight');
    const target = s1.results[1].id;
    await shot(page, 'web-05-keyboard-selection.png');
    await page.keyboard.press('Enter');
    const s3 = await waitForSearch(page, s1.searches);
    assert.equal(s3.query.id, target);
    await page.close();
  });

  test('drag and drop, and paste, search too', async () => {
    const page = await newPage();
    await openApp(page);
    const bytes = fs.readFileSync(path.join(CALTECH, 'airplanes', 'image_0002.jpg')).toString('base64');
    const fire = (kind) =>
      page.evaluate(
        ({ b64, kind }) => {
          const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bin], 'plane.jpg', { type: 'image/jpeg' }));
          if (kind === 'drop') {
            window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
            const overlay = !document.getElementById('drop-overlay').hidden;
            window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
            return overlay;
          }
          document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
          return true;
        },
        { b64: bytes, kind },
      );
    assert.equal(await fire('drop'), true, 'the drop overlay shows while dragging');
    const s1 = await waitForSearch(page, 0);
    assert.equal(s1.query.name, 'plane.jpg');
    assert.equal(s1.results[0].class, 'airplanes');
    assert.equal(await page.isHidden('#drop-overlay'), true);
    await fire('paste');
    const s2 = await waitForSearch(page, s1.searches);
    assert.equal(s2.results[0].class, 'airplanes');
    await page.close();
  });

  test('errors: a non-image upload says what to do; the app keeps working', async () => {
    const page = await newPage();
    await openApp(page);
    const bad = path.join(tmp, 'notes.jpg');
    fs.writeFileSync(bad, 'these are notes, not a photo\n');
    await page.setInputFiles('#file', bad);
    await page.waitForSelector('#message:not([hidden])');
    const msg = await page.textContent('#message');
    assert.match(msg, /not an image/);
    assert.match(msg, /Choose an image file/);
    await shot(page, 'web-06-error.png');
    await page.setInputFiles('#file', path.join(CALTECH, 'watch', 'image_0004.jpg'));
    const s = await waitForSearch(page, 0);
    assert.equal(s.error, null);
    assert.equal(s.results[0].class, 'watch');
    assert.equal(await page.isHidden('#message'), true);
    await page.close();
  });

  test('map: hover shows a thumbnail, wheel zooms, drag pans, click searches', async () => {
    const page = await newPage();
    await openApp(page);
    const box = await page.locator('#map').boundingBox();
    const id = await page.evaluate(() => window.__imgsearch.state.mapPoints[10].id);
    const [px, py] = await page.evaluate((i) => window.__imgsearch.screenPosition(i), id);
    await page.mouse.move(box.x + px, box.y + py);
    await page.waitForSelector('#tooltip:not([hidden]) img');
    const src = await page.getAttribute('#tooltip img', 'src');
    assert.match(src, /^\/api\/thumb\/\d+$/);
    await page.waitForFunction(() => document.querySelector('#tooltip img')?.complete);
    await shot(page, 'web-07-map-hover.png');
    // Wheel zoom keeps the point under the cursor in place.
    const z0 = (await appState(page)).map.zoom;
    await page.mouse.wheel(0, -400);
    await page.waitForFunction((z) => window.__imgsearch.map.zoom > z * 1.5, z0);
    const [qx, qy] = await page.evaluate((i) => window.__imgsearch.screenPosition(i), id);
    assert.ok(Math.hypot(qx - px, qy - py) < 3, `zoom moved the point under the cursor (${px},${py} -> ${qx},${qy})`);
    // Drag pans.
    await page.mouse.move(box.x + 100, box.y + 100);
    await page.mouse.down();
    await page.mouse.move(box.x + 160, box.y + 140, { steps: 5 });
    await page.mouse.up();
    const [rx, ry] = await page.evaluate((i) => window.__imgsearch.screenPosition(i), id);
    assert.ok(Math.abs(rx - qx - 60) < 2 && Math.abs(ry - qy - 40) < 2, `pan: ${qx},${qy} -> ${rx},${ry}`);
    // Click a point: searches from it.
    await page.click('#map-reset');
    const [cx, cy] = await page.evaluate((i) => window.__imgsearch.screenPosition(i), id);
    await page.mouse.click(box.x + cx, box.y + cy);
    const s = await waitForSearch(page, 0);
    assert.equal(s.query.kind, 'id');
    assert.ok(s.map.queryShown && s.map.neighbours === 24);
    await page.close();
  });

  test('map stays smooth with 100k points (WebGL)', async () => {
    const page = await newPage();
    await openApp(page);
    const st = await page.evaluate(() => window.__imgsearch.loadSynthetic(100000));
    assert.equal(st.drawnPoints, 100000);
    const msPerFrame = await page.evaluate(() => window.__imgsearch.benchmarkMap(20));
    const interval = await page.evaluate(() => window.__imgsearch.benchmarkMapAnimated(90));
    const lod = await page.evaluate(() => window.__imgsearch.map.lodBudget);
    console.log(
      `map with 100000 points (${st.renderer} on Chromium's software GL, no GPU): full redraw ${msPerFrame.toFixed(1)} ms; ` +
        `while zooming ${interval.toFixed(1)} ms between frames (${(1000 / interval).toFixed(0)} fps), ` +
        `drawing ${lod} points per frame until the view settles`,
    );
    await shot(page, 'web-08-map-100k.png', page.locator('.map-wrap'));
    // All points again once the view settles.
    await page.waitForFunction(() => window.__imgsearch.map.drawnPoints === 100000);
    assert.ok(interval < 100, `zooming 100k points: ${interval.toFixed(1)} ms between frames`);
    await page.close();
  });
});
