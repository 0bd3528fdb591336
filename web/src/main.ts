// imgsearch web app: search by photo (drop, paste, pick), browse results, explore the map.
import './style.css';
import { api, ApiError, type Hit, type MapPoint, type QueryInfo, type SearchResponse, type Stats } from './api';
import { MapView } from './map';
import { classColor } from './palette';

// ---- state ---------------------------------------------------------------------------

type Query =
  | { kind: 'id'; id: number; info?: QueryInfo }
  | { kind: 'upload'; name: string; url: string; size: number; info?: QueryInfo };

interface AppState {
  stats: Stats | null;
  query: Query | null;
  results: Hit[];
  timing: SearchResponse['timing'] | null;
  selected: number; // index into results, -1 = none
  loading: boolean;
  error: { title: string; hint: string } | null;
  k: number;
  classIndex: Map<string, number>;
  mapPoints: MapPoint[] | null;
  mapMethod: string;
  searches: number; // completed searches
  ready: boolean; // stats shown and the map drawn (or known to be pending)
}

const state: AppState = {
  stats: null,
  query: null,
  results: [],
  timing: null,
  selected: -1,
  loading: false,
  error: null,
  k: 24,
  classIndex: new Map(),
  mapPoints: null,
  mapMethod: '',
  searches: 0,
  ready: false,
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const els = {
  overview: $('overview'),
  query: $('query'),
  message: $('message'),
  empty: $('empty'),
  results: $('results'),
  file: $<HTMLInputElement>('file'),
  pick: $('pick'),
  home: $('home'),
  canvas: $<HTMLCanvasElement>('map'),
  mapStatus: $('map-status'),
  mapMethod: $('map-method'),
  tooltip: $('tooltip'),
  legend: $('legend'),
  dropOverlay: $('drop-overlay'),
};

const map = new MapView(els.canvas);

// Exposed for tests and the curious: the app's state and the map's counters.
const debug = {
  state,
  map: map.stats,
  firstRenderMs: -1,
  mapReadyMs: -1,
  screenPosition: (id: number) => map.screenPosition(id),
  benchmarkMap: (frames: number) => map.benchmark(frames),
  benchmarkMapAnimated: (frames: number) => map.benchmarkAnimated(frames),
  searchById: (id: number) => searchById(id),
  /** Replaces the map's points by n synthetic ones in 20 clusters (to check smoothness at scale). */
  loadSynthetic: (n: number) => {
    const x = new Float32Array(n), y = new Float32Array(n), cls = new Uint16Array(n);
    const ids = new Array<number>(n);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
    const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
    const centres = Array.from({ length: 20 }, () => [0.1 + 0.8 * rnd(), 0.1 + 0.8 * rnd()]);
    for (let i = 0; i < n; i++) {
      const c = i % 20;
      ids[i] = i + 1;
      cls[i] = c;
      x[i] = Math.min(1, Math.max(0, centres[c][0] + 0.05 * gauss()));
      y[i] = Math.min(1, Math.max(0, centres[c][1] + 0.05 * gauss()));
    }
    state.mapPoints = null;
    map.setLabels([]);
    map.setData({ ids, x, y, cls, classColors: Array.from({ length: 20 }, (_, i) => classColor(i)) });
    map.setHighlight({ queryId: 1, neighbourIds: ids.slice(0, 24), selectedId: null });
    map.drawNow();
    return { ...map.stats };
  },
};
(window as unknown as { __imgsearch: typeof debug }).__imgsearch = debug;

// ---- small DOM helper ------------------------------------------------------------------

type Child = Node | string | null | undefined | false;
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Record<string, unknown> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = String(v);
    else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v as EventListener);
    else if (k in e && typeof v !== 'string') (e as unknown as Record<string, unknown>)[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const icon = (path: string) => {
  const s = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.innerHTML = `<path d="${path}" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/>`;
  return s;
};
const UPLOAD_ICON = 'M12 16V4m0 0l-4.5 4.5M12 4l4.5 4.5M4 15v3a2 2 0 002 2h12a2 2 0 002-2v-3';

function colorOf(cls: string | undefined) {
  const i = cls === undefined ? undefined : state.classIndex.get(cls);
  return i === undefined ? '#98a2b3' : classColor(i);
}

function formatBytes(n: number) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / 1024)} KB`;
  return `${n} B`;
}

function imgWithFade(src: string, alt: string) {
  const img = el('img', { src, alt, loading: 'lazy', decoding: 'async', draggable: 'false' });
  img.addEventListener('load', () => img.classList.add('loaded'));
  img.addEventListener('error', () => img.classList.add('loaded'));
  return img;
}

// ---- overview ---------------------------------------------------------------------------

function renderOverview() {
  const s = state.stats;
  els.overview.replaceChildren();
  if (!s) return;
  const chip = (label: string, value: string, strong = false, title?: string) =>
    el('span', { class: strong ? 'chip strong' : 'chip', title }, el('b', {}, value), label ? ` ${label}` : '');
  const folders = s.classes.length;
  els.overview.append(
    chip('images', s.count.toLocaleString(), true, s.database),
    chip(folders === 1 ? 'folder' : 'folders', String(folders), false, s.root ? `below ${s.root}` : undefined),
    chip('', s.model, false, 'model'),
    chip('layer', s.layer),
    chip('pooling', s.pooling),
    chip('', s.metric, false, 'similarity'),
    chip('index', s.index, false, (s.index === 'Flat' || s.index === 'IDMap,Flat' ? 'exact search' : 'approximate search') +
      (s.index_requested && s.index_requested !== s.index ? ` (asked: ${s.index_requested})` : '')),
    chip('dims', String(s.dim), false, 'vector dimension'),
  );
}

// ---- messages ----------------------------------------------------------------------------

function hintFor(e: unknown): { title: string; hint: string } {
  if (e instanceof ApiError) {
    const limit = state.stats ? formatBytes(state.stats.limits.max_upload_bytes) : '32 MB';
    switch (e.status) {
      case 0:
        return { title: e.message, hint: 'Start it again with `imgsearch serve --db …`, then reload this page.' };
      case 413:
        return { title: e.message, hint: `Choose a smaller photo (up to ${limit}).` };
      case 415:
        return {
          title: e.message,
          hint: 'Choose an image file: JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC.',
        };
      case 404:
        return { title: e.message, hint: 'The collection may have changed: reload the page.' };
      case 400:
        return { title: e.message, hint: 'The photo could not be read; try another one.' };
      default:
        return { title: e.message, hint: 'See the terminal running `imgsearch serve` for details.' };
    }
  }
  return { title: String((e as Error)?.message ?? e), hint: '' };
}

function renderMessage() {
  const m = state.error;
  els.message.hidden = !m;
  if (!m) return;
  els.message.replaceChildren(
    el('div', {}, el('b', {}, m.title), m.hint ? el('span', { class: 'hint' }, m.hint) : null),
    el('button', { class: 'close', title: 'Dismiss', 'aria-label': 'Dismiss', onclick: () => setError(null) }, '×'),
  );
}

function setError(e: { title: string; hint: string } | null) {
  state.error = e;
  renderMessage();
}

// ---- empty state ---------------------------------------------------------------------------

function renderEmpty() {
  els.empty.replaceChildren();
  if (state.query) return;
  const s = state.stats;
  if (s && s.count === 0) {
    els.empty.append(
      el(
        'div',
        { class: 'notice' },
        el('h2', {}, 'This collection is empty'),
        el('p', {}, 'Index a folder of photos into this database, then reload this page:'),
        el('p', {}, el('code', {}, `imgsearch index ~/Pictures --db ${s.database}`)),
      ),
    );
    return;
  }
  const zone = el(
    'div',
    { class: 'dropzone', id: 'dropzone' },
    el('div', { class: 'big-icon' }, icon(UPLOAD_ICON)),
    el('h2', {}, 'Find photos that look alike'),
    el(
      'p',
      {},
      'Drop a photo here, paste one with ',
      el('span', { class: 'kbd' }, 'Ctrl'),
      ' + ',
      el('span', { class: 'kbd' }, 'V'),
      ', or choose a file.',
    ),
    el(
      'div',
      { class: 'row' },
      el('button', { class: 'btn primary', type: 'button', onclick: () => els.file.click() }, icon(UPLOAD_ICON), 'Choose a photo'),
      el('button', { class: 'btn', type: 'button', onclick: () => searchRandom(), disabled: !state.mapPoints?.length }, 'Surprise me'),
    ),
    el(
      'p',
      {},
      'Or click any point on the map. Then use ',
      el('span', { class: 'kbd' }, '←'),
      ' ',
      el('span', { class: 'kbd' }, '→'),
      ' ',
      el('span', { class: 'kbd' }, '↑'),
      ' ',
      el('span', { class: 'kbd' }, '↓'),
      ' and ',
      el('span', { class: 'kbd' }, 'Enter'),
      ' to keep exploring.',
    ),
  );
  // One photo from each of the first folders, to start from.
  if (state.mapPoints && state.mapPoints.length) {
    const firstOf = new Map<string, MapPoint>();
    for (const p of state.mapPoints) if (!firstOf.has(p.class)) firstOf.set(p.class, p);
    const picks = [...firstOf.values()].slice(0, 16);
    zone.append(
      el(
        'div',
        { class: 'samples' },
        el('h3', {}, 'Or start from one of these'),
        el(
          'div',
          { class: 'sample-row' },
          ...picks.map((p) =>
            el(
              'button',
              { type: 'button', title: `${p.class}: ${p.path}`, onclick: () => searchById(p.id) },
              el('img', { src: api.thumbUrl(p.id), alt: p.class, loading: 'lazy', decoding: 'async' }),
            ),
          ),
        ),
      ),
    );
  }
  for (const t of ['dragenter', 'dragover']) zone.addEventListener(t, () => zone.classList.add('over'));
  for (const t of ['dragleave', 'drop']) zone.addEventListener(t, () => zone.classList.remove('over'));
  els.empty.append(zone);
}

// ---- pinned query ------------------------------------------------------------------------

function renderQuery() {
  const q = state.query;
  els.query.hidden = !q;
  if (!q) return els.query.replaceChildren();
  const info = q.info;
  const thumbSrc = q.kind === 'id' ? api.thumbUrl(q.id) : q.url;
  const name = info?.name ?? (q.kind === 'upload' ? q.name : `image ${q.id}`);
  const sub: Child[] = [];
  if (q.kind === 'upload') {
    sub.push(el('span', {}, 'Uploaded photo'));
    if (info) sub.push(el('span', {}, `${info.width} × ${info.height}`));
    sub.push(el('span', {}, formatBytes(q.size)));
  } else {
    if (info?.class)
      sub.push(el('span', {}, el('i', { class: 'dot', style: { background: colorOf(info.class) } }), ' ', info.class));
    if (info) sub.push(el('span', {}, `${info.width} × ${info.height}`));
    sub.push(el('span', {}, `id ${q.id}`));
  }
  if (state.timing && !state.loading)
    sub.push(el('span', {}, `${state.results.length} results in ${Math.round(state.timing.total_ms)} ms`));
  const kSelect = el(
    'select',
    { class: 'k-select', title: 'Number of results', 'aria-label': 'Number of results' },
    ...[12, 24, 48, 96].map((k) => el('option', { value: String(k), selected: k === state.k }, `${k} results`)),
  ) as HTMLSelectElement;
  kSelect.addEventListener('change', () => {
    state.k = Number(kSelect.value);
    rerun();
  });
  els.query.replaceChildren(
    el(
      'div',
      { class: 'query-thumb' },
      el('img', { src: thumbSrc, alt: '', onerror: (e: Event) => ((e.target as HTMLElement).style.visibility = 'hidden') }),
      state.loading ? el('span', { class: 'spinner', 'aria-label': 'searching' }) : null,
    ),
    el(
      'div',
      { class: 'query-info' },
      el('span', { class: 'eyebrow' }, q.kind === 'upload' ? 'Your photo' : 'Searching from'),
      el('div', { class: 'query-name', title: info?.path ?? name }, name),
      el('div', { class: 'query-sub' }, ...sub),
    ),
    el(
      'div',
      { class: 'query-actions' },
      kSelect,
      q.kind === 'id' ? el('a', { href: api.imageUrl(q.id), target: '_blank', rel: 'noopener' }, 'Open original ↗') : null,
      el('button', { class: 'btn small ghost', type: 'button', onclick: () => clearQuery() }, 'Clear'),
    ),
  );
}

// ---- results ------------------------------------------------------------------------------

function renderResults() {
  els.results.replaceChildren();
  if (state.loading && state.results.length === 0) {
    for (let i = 0; i < Math.min(state.k, 12); i++)
      els.results.append(
        el(
          'div',
          { class: 'card skeleton', 'aria-hidden': 'true' },
          el('div', { class: 'thumb' }),
          el('div', { class: 'body' }, el('div', { class: 'line', style: { width: '80%' } }), el('div', { class: 'line', style: { width: '50%' } })),
        ),
      );
    return;
  }
  const hits = state.results;
  if (!hits.length) return;
  const cosine = state.stats?.metric !== 'l2';
  const lo = Math.min(...hits.map((h) => h.score)), hi = Math.max(...hits.map((h) => h.score));
  hits.forEach((h, i) => {
    const frac = cosine ? Math.max(0, Math.min(1, h.score)) : hi > lo ? (h.score - lo) / (hi - lo) : 1;
    const card = el(
      'button',
      {
        class: 'card',
        type: 'button',
        role: 'option',
        'aria-selected': String(i === state.selected),
        'data-id': String(h.id),
        'data-index': String(i),
        title: `${h.path}\nscore ${h.score.toFixed(4)}: click to search from this image`,
        onclick: () => {
          select(i, false);
          searchById(h.id);
        },
        onfocus: () => select(i, false),
      },
      el(
        'div',
        { class: 'thumb' },
        imgWithFade(api.thumbUrl(h.id), h.name),
        el('span', { class: 'rank' }, `#${h.rank}`),
        el('span', { class: 'score' }, h.score.toFixed(cosine ? 3 : 2)),
      ),
      el(
        'div',
        { class: 'body' },
        el('div', { class: 'name' }, h.name),
        el('div', { class: 'cls' }, el('i', { class: 'dot', style: { background: colorOf(h.class) } }), h.class || '—'),
        el('div', { class: 'bar' }, el('span', { style: { width: `${(frac * 100).toFixed(1)}%` } })),
      ),
    );
    els.results.append(card);
  });
}

function select(i: number, focus = true) {
  if (i < 0 || i >= state.results.length) return;
  const prev = els.results.querySelector('[aria-selected="true"]');
  prev?.setAttribute('aria-selected', 'false');
  state.selected = i;
  const card = els.results.querySelector<HTMLElement>(`[data-index="${i}"]`);
  card?.setAttribute('aria-selected', 'true');
  if (focus && card) {
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }
  map.setHighlight({ selectedId: state.results[i].id });
}

function columns(): number {
  const cards = els.results.querySelectorAll<HTMLElement>('.card');
  if (cards.length < 2) return 1;
  const top = cards[0].offsetTop;
  let n = 0;
  for (const c of cards) {
    if (c.offsetTop !== top) break;
    n++;
  }
  return Math.max(1, n);
}

// ---- searching ----------------------------------------------------------------------------

let inflight: AbortController | null = null;
let seq = 0;

async function run(query: Query, request: (signal: AbortSignal) => Promise<SearchResponse>) {
  inflight?.abort();
  const ctl = new AbortController();
  inflight = ctl;
  const mine = ++seq;
  if (state.query?.kind === 'upload' && state.query !== query) URL.revokeObjectURL(state.query.url);
  state.query = query;
  state.loading = true;
  state.selected = -1;
  setError(null);
  renderEmpty();
  renderQuery();
  if (state.results.length === 0) renderResults();
  else els.results.style.opacity = '0.55';
  try {
    const res = await request(ctl.signal);
    if (mine !== seq) return;
    query.info = res.query;
    state.results = res.results;
    state.timing = res.timing;
    state.searches++;
  } catch (e) {
    if ((e as Error).name === 'AbortError' || mine !== seq) return;
    // Nothing to pin: back to the start, with the reason and what to do above it.
    if (query.kind === 'upload') URL.revokeObjectURL(query.url);
    state.query = null;
    state.results = [];
    state.timing = null;
    setError(hintFor(e));
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  } finally {
    if (mine === seq) {
      state.loading = false;
      els.results.style.opacity = '';
      renderQuery();
      renderResults();
      if (!state.query) renderEmpty();
      map.setHighlight({
        queryId: state.query && query.kind === 'id' ? query.id : null,
        neighbourIds: state.results.map((h) => h.id),
        selectedId: null,
      });
      map.focusHighlight();
      if (state.results.length) window.scrollTo({ top: 0, behavior: 'smooth' });
    }
  }
}

function searchById(id: number, push = true) {
  if (push) {
    const hash = `#id=${id}`;
    if (location.hash !== hash) history.pushState(null, '', hash);
  }
  return run({ kind: 'id', id }, (signal) => api.neighbors(id, state.k, signal));
}

function searchFile(file: File) {
  const limit = state.stats?.limits.max_upload_bytes ?? 32 << 20;
  if (file.size > limit) {
    setError({
      title: `${file.name} is ${formatBytes(file.size)}: larger than the ${formatBytes(limit)} limit`,
      hint: 'Choose a smaller photo.',
    });
    return Promise.resolve();
  }
  if (file.type && !file.type.startsWith('image/')) {
    setError({
      title: `${file.name || 'That file'} is not an image (${file.type})`,
      hint: 'Choose an image file: JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC.',
    });
    return Promise.resolve();
  }
  if (location.hash) history.pushState(null, '', location.pathname + location.search);
  const name = file.name || 'pasted image';
  const q: Query = { kind: 'upload', name, url: URL.createObjectURL(file), size: file.size };
  return run(q, (signal) => api.searchUpload(file, name, state.k, signal));
}

function rerun() {
  const q = state.query;
  if (!q) return;
  if (q.kind === 'id') void searchById(q.id, false);
  // An upload is not kept: ask for it again.
  else setError({ title: 'Drop or paste the photo again to see more results.', hint: '' });
}

function searchRandom() {
  const pts = state.mapPoints;
  if (!pts || !pts.length) return;
  void searchById(pts[Math.floor(Math.random() * pts.length)].id);
}

function clearQuery() {
  inflight?.abort();
  seq++;
  if (state.query?.kind === 'upload') URL.revokeObjectURL(state.query.url);
  state.query = null;
  state.results = [];
  state.timing = null;
  state.loading = false;
  state.selected = -1;
  setError(null);
  if (location.hash) history.pushState(null, '', location.pathname + location.search);
  renderQuery();
  renderResults();
  renderEmpty();
  map.setHighlight({ queryId: null, neighbourIds: [], selectedId: null });
}

function routeFromHash() {
  const m = /^#id=(\d+)$/.exec(location.hash);
  if (m) void searchById(Number(m[1]), false);
  else if (state.query?.kind === 'id') clearQuery();
}

// ---- map ------------------------------------------------------------------------------------

function renderLegend() {
  const s = state.stats;
  els.legend.replaceChildren();
  if (!s) return;
  s.classes.forEach((c, i) => {
    const b = el(
      'button',
      { type: 'button', title: `${c.count} images in ${c.name}` },
      el('i', { class: 'dot', style: { background: classColor(i) } }),
      c.name,
      el('span', { class: 'count' }, String(c.count)),
    );
    b.addEventListener('mouseenter', () => map.setHighlight({ focusClass: i }));
    b.addEventListener('mouseleave', () => map.setHighlight({ focusClass: null }));
    els.legend.append(b);
  });
  els.legend.hidden = s.classes.length <= 1;
}

function showMapStatus(text: string | null, spinning = false) {
  els.mapStatus.hidden = text === null;
  els.mapStatus.replaceChildren();
  if (text !== null) els.mapStatus.append(el('div', {}, spinning ? el('span', { class: 'spinner' }) : null, text));
}

async function loadMap() {
  for (let attempt = 0; ; attempt++) {
    let res: Awaited<ReturnType<typeof api.map>>;
    try {
      res = await api.map();
    } catch (e) {
      showMapStatus(`The map is unavailable: ${hintFor(e).title}`);
      return;
    }
    if (res) {
      applyMap(res.points, res.method);
      return;
    }
    showMapStatus(`Laying out ${state.stats?.count.toLocaleString() ?? ''} images by similarity…`, true);
    if (!state.ready) markReady(); // the page is usable while the layout is computed
    await new Promise((r) => setTimeout(r, Math.min(2000, 400 + attempt * 200)));
  }
}

function applyMap(points: MapPoint[], method: string) {
  state.mapPoints = points;
  state.mapMethod = method;
  const classes = state.stats?.classes.map((c) => c.name) ?? [];
  for (const p of points)
    if (!state.classIndex.has(p.class)) {
      state.classIndex.set(p.class, classes.length);
      classes.push(p.class);
    }
  const n = points.length;
  const x = new Float32Array(n), y = new Float32Array(n), cls = new Uint16Array(n);
  const ids = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const p = points[i];
    ids[i] = p.id;
    x[i] = p.x;
    y[i] = p.y;
    cls[i] = state.classIndex.get(p.class) ?? 0;
  }
  map.setData({ ids, x, y, cls, classColors: classes.map((_, i) => classColor(i)) });
  // Each folder's name at its median point, while there are few enough to read.
  const byClass = classes.map(() => ({ xs: [] as number[], ys: [] as number[] }));
  for (let i = 0; i < n; i++) {
    byClass[cls[i]].xs.push(x[i]);
    byClass[cls[i]].ys.push(y[i]);
  }
  const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1];
  map.setLabels(
    classes.length > 1 && classes.length <= 30
      ? byClass.flatMap((c, i) =>
          c.xs.length ? [{ text: classes[i], color: classColor(i), x: median(c.xs), y: median(c.ys) }] : [],
        )
      : [],
  );
  if (state.query) {
    map.setHighlight({
      queryId: state.query.kind === 'id' ? state.query.id : null,
      neighbourIds: state.results.map((h) => h.id),
    });
  }
  map.drawNow();
  els.mapMethod.hidden = !method;
  els.mapMethod.textContent = method === 'pca' ? 'PCA' : method.toUpperCase();
  els.mapMethod.title =
    method === 'umap' ? 'UMAP layout: nearby points are similar images' : 'Linear projection (UMAP not available)';
  showMapStatus(n === 0 ? 'No images to show.' : null);
  debug.mapReadyMs = performance.now();
  if (!state.query) renderEmpty(); // now with sample photos
  if (!state.ready) markReady();
}

function markReady() {
  state.ready = true;
  debug.firstRenderMs = performance.now();
  document.body.dataset.ready = 'true';
}

map.onClick = (id) => void searchById(id);
map.onHover = (index, cx, cy) => {
  const tip = els.tooltip;
  if (index === null || !state.mapPoints) {
    tip.hidden = true;
    return;
  }
  const p = state.mapPoints[index];
  if (!p) return;
  if (tip.dataset.id !== String(p.id)) {
    tip.dataset.id = String(p.id);
    const name = p.path.slice(p.path.lastIndexOf('/') + 1);
    tip.replaceChildren(
      el('img', { src: api.thumbUrl(p.id), alt: '' }),
      el(
        'div',
        { class: 'tip-body' },
        el('div', { class: 'tip-name' }, name),
        el('div', { class: 'tip-sub' }, el('i', { class: 'dot', style: { background: colorOf(p.class) } }), p.class),
      ),
    );
  }
  tip.hidden = false;
  const w = 188, h = 200;
  const left = cx + 16 + w > window.innerWidth ? cx - 16 - w : cx + 16;
  const top = Math.min(window.innerHeight - h - 8, Math.max(8, cy - h / 2));
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
};

// ---- input: picker, drop, paste, keys ------------------------------------------------------

els.pick.addEventListener('click', () => els.file.click());
els.file.addEventListener('change', () => {
  const f = els.file.files?.[0];
  if (f) void searchFile(f);
  els.file.value = '';
});
els.home.addEventListener('click', (e) => {
  e.preventDefault();
  clearQuery();
});
$('map-reset').addEventListener('click', () => map.resetView());
$('zoom-in').addEventListener('click', () => map.zoomBy(1.6));
$('zoom-out').addEventListener('click', () => map.zoomBy(1 / 1.6));

let dragDepth = 0;
const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes('Files');
window.addEventListener('dragenter', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth++;
  els.dropOverlay.hidden = false;
});
window.addEventListener('dragover', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
});
window.addEventListener('dragleave', (e) => {
  if (!hasFiles(e)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) els.dropOverlay.hidden = true;
});
window.addEventListener('drop', (e) => {
  e.preventDefault();
  dragDepth = 0;
  els.dropOverlay.hidden = true;
  const files = Array.from(e.dataTransfer?.files ?? []);
  const f = files.find((x) => x.type.startsWith('image/')) ?? files[0];
  if (f) void searchFile(f);
  else setError({ title: 'Nothing to search with', hint: 'Drop an image file from your computer.' });
});
window.addEventListener('paste', (e) => {
  const items = Array.from(e.clipboardData?.items ?? []);
  const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
  const f = item?.getAsFile();
  if (f) {
    e.preventDefault();
    void searchFile(f);
  }
});

document.addEventListener('keydown', (e) => {
  const t = e.target as HTMLElement;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const n = state.results.length;
  if (!n) return;
  const cur = state.selected;
  let next = cur;
  switch (e.key) {
    case 'ArrowRight':
      next = cur < 0 ? 0 : Math.min(n - 1, cur + 1);
      break;
    case 'ArrowLeft':
      next = cur < 0 ? 0 : Math.max(0, cur - 1);
      break;
    case 'ArrowDown':
      next = cur < 0 ? 0 : Math.min(n - 1, cur + columns());
      break;
    case 'ArrowUp':
      next = cur < 0 ? 0 : Math.max(0, cur - columns());
      break;
    case 'Home':
      next = 0;
      break;
    case 'End':
      next = n - 1;
      break;
    case 'Enter':
      if (cur >= 0) {
        e.preventDefault();
        void searchById(state.results[cur].id);
      }
      return;
    case 'Escape':
      if (cur >= 0) {
        els.results.querySelector('[aria-selected="true"]')?.setAttribute('aria-selected', 'false');
        state.selected = -1;
        (document.activeElement as HTMLElement | null)?.blur();
        map.setHighlight({ selectedId: null });
      }
      return;
    default:
      return;
  }
  e.preventDefault();
  select(next);
});

window.addEventListener('popstate', routeFromHash);

// ---- start -------------------------------------------------------------------------------

async function boot() {
  try {
    state.stats = await api.stats();
  } catch (e) {
    setError(hintFor(e));
    showMapStatus('The map needs the server.');
    markReady();
    return;
  }
  state.k = Math.min(state.k, state.stats.limits.max_k);
  state.stats.classes.forEach((c, i) => state.classIndex.set(c.name, i));
  renderOverview();
  renderLegend();
  renderEmpty();
  routeFromHash();
  if (state.stats.count === 0) {
    showMapStatus('No images to show.');
    markReady();
    return;
  }
  await loadMap();
}

void boot();
