// The embedding map: every indexed image as a point, coloured by class, with zoom, pan,
// hover and click. Drawn with WebGL (one draw call for all points, a second for the few
// highlighted ones on top), or with a 2-D canvas when WebGL is unavailable.

import { rgbOf } from './palette';

export interface MapData {
  ids: number[];
  x: Float32Array; // [0, 1]
  y: Float32Array; // [0, 1]
  cls: Uint16Array; // class index per point
  classColors: string[]; // CSS colour per class
}

export interface Highlight {
  queryId: number | null; // the indexed image searched from
  neighbourIds: number[]; // its results
  selectedId: number | null; // keyboard-selected result
  focusClass: number | null; // legend hover: this class stays bright
}

export interface MapStats {
  renderer: 'webgl' | 'canvas2d' | 'none';
  points: number;
  drawnPoints: number;
  highlighted: number; // neighbours and query point shown highlighted
  lodBudget: number; // points drawn per frame while interacting (all when fast enough)
  animating: boolean; // the view is gliding to the results
  neighbours: number;
  queryShown: boolean;
  frames: number;
  lastFrameMs: number;
  zoom: number;
}

const KIND_NORMAL = 0;
const KIND_CLASS = 0.75; // bright because its class is focused, no ring
const KIND_NEIGHBOUR = 1;
const KIND_SELECTED = 2;
const KIND_QUERY = 3;
const FLOATS = 6; // x, y, r, g, b, kind

const VS = `
attribute vec2 a_pos;
attribute vec3 a_color;
attribute float a_kind;
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform float u_size;
uniform float u_dim;
uniform float u_dpr;
varying vec3 v_color;
varying float v_alpha;
varying float v_kind;
varying float v_px;
void main() {
  gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
  float s = u_size;
  if (a_kind > 2.5) s = u_size * 1.15 + 13.0 * u_dpr;
  else if (a_kind > 1.5) s = u_size + 10.0 * u_dpr;
  else if (a_kind > 0.9) s = u_size + 6.0 * u_dpr;
  gl_PointSize = s;
  v_px = s;
  v_color = a_color;
  v_kind = a_kind;
  v_alpha = a_kind > 0.5 ? 1.0 : mix(0.9, 0.16, u_dim);
}`;

const FS = `
precision mediump float;
varying vec3 v_color;
varying float v_alpha;
varying float v_kind;
varying float v_px;
void main() {
  vec2 p = gl_PointCoord * 2.0 - 1.0;
  float r = length(p);
  float aa = 2.5 / v_px;
  float alpha = 1.0 - smoothstep(1.0 - aa, 1.0, r);
  if (alpha <= 0.0) discard;
  vec3 c = v_color;
  if (v_kind > 2.5) {
    // The query: dark core, class colour, white ring, indigo halo.
    c = mix(vec3(0.07, 0.09, 0.15), c, smoothstep(0.2 - aa, 0.2, r));
    c = mix(c, vec3(1.0), smoothstep(0.46 - aa, 0.46, r));
    c = mix(c, vec3(0.51, 0.55, 0.97), smoothstep(0.7 - aa, 0.7, r));
  } else if (v_kind > 0.9) {
    // Neighbours (and the selected or hovered point): a white ring around the class colour.
    c = mix(c, vec3(1.0), smoothstep(0.58 - aa, 0.58, r));
  }
  gl_FragColor = vec4(c, alpha * v_alpha);
}`;

export class MapView {
  readonly canvas: HTMLCanvasElement;
  private labelLayer: HTMLDivElement;
  private labels: { el: HTMLDivElement; x: number; y: number }[] = [];
  renderer: MapStats['renderer'] = 'none';
  onHover: (index: number | null, clientX: number, clientY: number) => void = () => {};
  onClick: (id: number) => void = () => {};

  private gl: WebGLRenderingContext | null = null;
  private ctx2d: CanvasRenderingContext2D | null = null;
  private program: WebGLProgram | null = null;
  private mainBuf: WebGLBuffer | null = null;
  private hiBuf: WebGLBuffer | null = null;
  private hiCount = 0;
  private loc = { pos: -1, color: -1, kind: -1 };
  private uni: Record<string, WebGLUniformLocation | null> = {};

  private data: MapData | null = null;
  private idToIndex = new Map<number, number>();
  private rgb: [number, number, number][] = [];
  private hl: Highlight = { queryId: null, neighbourIds: [], selectedId: null, focusClass: null };
  private hiIndices: { index: number; kind: number }[] = [];
  private hoverIndex: number | null = null;

  // View: data point (cx, cy) at the canvas centre, `zoom` x the fitted scale.
  private cx = 0.5;
  private cy = 0.5;
  private zoom = 1;
  private width = 1; // CSS px
  private height = 1;
  private dpr = 1;
  private frame = 0;
  private dirty = false;

  // Level of detail while zooming or panning: the GPU buffer holds the points in a random
  // order, so any prefix is a uniform sample; during interaction only `budget` of them are
  // drawn when frames run slow (software GL, weak GPUs), and all of them once it stops.
  private interacting = false;
  private interactTimer = 0;
  private budget = Infinity;
  private lastFrameAt = 0;

  // Picking: points bucketed on a uniform grid over [0, 1]^2.
  private gridSize = 1;
  private cellStart = new Uint32Array(2);
  private cellItems = new Uint32Array(0);

  readonly stats: MapStats = {
    renderer: 'none', points: 0, drawnPoints: 0, highlighted: 0, lodBudget: 0, animating: false, neighbours: 0, queryShown: false,
    frames: 0, lastFrameMs: 0, zoom: 1,
  };

  constructor(canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    this.labelLayer = document.createElement('div');
    this.labelLayer.className = 'map-labels';
    canvas.after(this.labelLayer);
    this.initGl();
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
    this.installInput();
  }

  private initGl() {
    const opts: WebGLContextAttributes = { antialias: false, alpha: false, premultipliedAlpha: false, depth: false };
    const gl = (this.canvas.getContext('webgl', opts) as WebGLRenderingContext | null) ?? null;
    if (gl) {
      const compile = (type: number, src: string) => {
        const s = gl.createShader(type)!;
        gl.shaderSource(s, src);
        gl.compileShader(s);
        if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) ?? 'shader');
        return s;
      };
      try {
        const prog = gl.createProgram()!;
        gl.attachShader(prog, compile(gl.VERTEX_SHADER, VS));
        gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, FS));
        gl.linkProgram(prog);
        if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog) ?? 'link');
        this.program = prog;
        this.loc = {
          pos: gl.getAttribLocation(prog, 'a_pos'),
          color: gl.getAttribLocation(prog, 'a_color'),
          kind: gl.getAttribLocation(prog, 'a_kind'),
        };
        for (const u of ['u_scale', 'u_offset', 'u_size', 'u_dim', 'u_dpr']) this.uni[u] = gl.getUniformLocation(prog, u);
        this.mainBuf = gl.createBuffer();
        this.hiBuf = gl.createBuffer();
        this.gl = gl;
        this.renderer = 'webgl';
      } catch (e) {
        console.warn('WebGL map unavailable, using a 2-D canvas:', e);
      }
    }
    if (!this.gl) {
      this.ctx2d = this.canvas.getContext('2d');
      this.renderer = this.ctx2d ? 'canvas2d' : 'none';
    }
    this.stats.renderer = this.renderer;
  }

  setData(data: MapData) {
    this.data = data;
    const n = data.ids.length;
    this.idToIndex = new Map();
    for (let i = 0; i < n; i++) this.idToIndex.set(data.ids[i], i);
    this.rgb = data.classColors.map(rgbOf);
    this.buildGrid();
    if (this.gl) {
      // Random order (deterministic), so that a prefix is a uniform sample (see budget).
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      let seed = 0x9e3779b9;
      for (let i = n - 1; i > 0; i--) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        const j = seed % (i + 1);
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      const buf = new Float32Array(n * FLOATS);
      for (let k = 0; k < n; k++) {
        const i = order[k];
        const c = this.rgb[data.cls[i]] ?? [0.5, 0.5, 0.5];
        buf.set([data.x[i], data.y[i], c[0], c[1], c[2], KIND_NORMAL], k * FLOATS);
      }
      this.budget = Infinity;
      this.gl.bindBuffer(this.gl.ARRAY_BUFFER, this.mainBuf);
      this.gl.bufferData(this.gl.ARRAY_BUFFER, buf, this.gl.STATIC_DRAW);
    }
    this.stats.points = n;
    this.rebuildHighlight();
    this.resetView();
  }

  /** Names drawn over the map at data positions (e.g. each class at its median point). */
  setLabels(labels: { text: string; color: string; x: number; y: number }[]) {
    this.labelLayer.replaceChildren();
    this.labels = labels.map((l) => {
      const el = document.createElement('div');
      el.className = 'map-label';
      el.textContent = l.text;
      el.style.setProperty('--c', l.color);
      this.labelLayer.append(el);
      return { el, x: l.x, y: l.y };
    });
    this.placeLabels();
  }

  private placeLabels() {
    this.labelLayer.classList.toggle('dim', this.dimmed());
    for (const l of this.labels) {
      const [sx, sy] = this.toScreen(l.x, l.y);
      l.el.style.transform = `translate(${sx.toFixed(1)}px, ${sy.toFixed(1)}px)`;
    }
  }

  hasPoint(id: number) {
    return this.idToIndex.has(id);
  }

  setHighlight(h: Partial<Highlight>) {
    this.hl = { ...this.hl, ...h };
    this.rebuildHighlight();
    this.requestDraw();
  }

  resetView() {
    cancelAnimationFrame(this.anim);
    this.stats.animating = false;
    this.cx = 0.5;
    this.cy = 0.5;
    this.zoom = 1;
    this.requestDraw();
  }

  /** Brings the query and its neighbours into view: when they are off screen or packed
   *  into a few pixels (UMAP clusters are tight), glides to frame them in about half the
   *  view (zoom 1 to 8). */
  focusHighlight() {
    const d = this.data;
    const pts = this.hiIndices.filter((e) => e.kind >= KIND_NEIGHBOUR);
    if (!d || pts.length === 0) return;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    let offscreen = false;
    for (const { index } of pts) {
      x0 = Math.min(x0, d.x[index]);
      x1 = Math.max(x1, d.x[index]);
      y0 = Math.min(y0, d.y[index]);
      y1 = Math.max(y1, d.y[index]);
      const [sx, sy] = this.toScreen(d.x[index], d.y[index]);
      offscreen = offscreen || sx < 0 || sy < 0 || sx > this.width || sy > this.height;
    }
    const s = this.fit() * this.zoom;
    const extentPx = Math.max(x1 - x0, y1 - y0) * s;
    if (!offscreen && extentPx >= 140) return;
    const extent = Math.max(x1 - x0, y1 - y0, 1e-6);
    const zoom = Math.min(8, Math.max(1, 0.5 / extent));
    this.animateTo((x0 + x1) / 2, (y0 + y1) / 2, zoom);
  }

  private anim = 0;
  /** Glides the view to centre (cx, cy) at `zoom` in about 350 ms. */
  animateTo(cx: number, cy: number, zoom: number) {
    cancelAnimationFrame(this.anim);
    const from = { cx: this.cx, cy: this.cy, z: Math.log(this.zoom) };
    const to = { cx, cy, z: Math.log(zoom) };
    const t0 = performance.now();
    this.stats.animating = true;
    const step = (t: number) => {
      const u = Math.min(1, (t - t0) / 350);
      const e = u < 0.5 ? 2 * u * u : 1 - Math.pow(-2 * u + 2, 2) / 2; // ease in-out
      this.cx = from.cx + (to.cx - from.cx) * e;
      this.cy = from.cy + (to.cy - from.cy) * e;
      this.zoom = Math.exp(from.z + (to.z - from.z) * e);
      if (u < 1) {
        this.touch();
        this.drawNow();
        this.anim = requestAnimationFrame(step);
      } else {
        this.stats.animating = false;
        this.drawNow();
      }
    };
    this.anim = requestAnimationFrame(step);
  }

  /** CSS pixel position (relative to the canvas) of an indexed image's point, or null. */
  screenPosition(id: number): [number, number] | null {
    const i = this.idToIndex.get(id);
    if (i === undefined || !this.data) return null;
    return this.toScreen(this.data.x[i], this.data.y[i]);
  }

  pointId(index: number) {
    return this.data ? this.data.ids[index] : -1;
  }

  /** Redraws `frames` times in a row, each waited for (a pixel read back), and returns
   *  the mean milliseconds per frame: the cost of one redraw during zoom or pan. */
  benchmark(frames: number): number {
    const px = new Uint8Array(4);
    const t0 = performance.now();
    for (let f = 0; f < frames; f++) {
      this.zoom *= 1.01;
      this.drawNow();
      this.gl?.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
    }
    return (performance.now() - t0) / frames;
  }

  /** Zooms continuously for `frames` animation frames; resolves to the mean frame interval (ms). */
  benchmarkAnimated(frames: number): Promise<number> {
    return new Promise((resolve) => {
      let n = 0;
      let t0 = 0;
      const step = (t: number) => {
        if (n === 0) t0 = t;
        if (n++ === frames) return resolve((t - t0) / frames);
        this.zoomBy(n % 60 < 30 ? 1.02 : 1 / 1.02);
        this.drawNow();
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    });
  }

  private fit() {
    return Math.min(this.width, this.height) * 0.92;
  }

  private toScreen(x: number, y: number): [number, number] {
    const s = this.fit() * this.zoom;
    return [(x - this.cx) * s + this.width / 2, (y - this.cy) * s + this.height / 2];
  }

  private toData(sx: number, sy: number): [number, number] {
    const s = this.fit() * this.zoom;
    return [(sx - this.width / 2) / s + this.cx, (sy - this.height / 2) / s + this.cy];
  }

  private baseSize() {
    const n = Math.max(1, this.stats.points);
    const base = Math.min(9, Math.max(2, 190 / Math.sqrt(n)));
    return Math.min(18, base * (1 + 0.3 * Math.log2(Math.max(1, this.zoom))));
  }

  private rebuildHighlight() {
    const list: { index: number; kind: number }[] = [];
    const seen = new Set<number>();
    const add = (id: number | null, kind: number) => {
      if (id === null) return;
      const i = this.idToIndex.get(id);
      if (i === undefined) return;
      if (seen.has(i)) {
        const e = list.find((x) => x.index === i)!;
        e.kind = Math.max(e.kind, kind);
        return;
      }
      seen.add(i);
      list.push({ index: i, kind });
    };
    if (this.data && this.hl.focusClass !== null) {
      const c = this.hl.focusClass;
      for (let i = 0; i < this.data.cls.length; i++) if (this.data.cls[i] === c) add(this.data.ids[i], KIND_CLASS);
    }
    for (const id of this.hl.neighbourIds) add(id, KIND_NEIGHBOUR);
    add(this.hl.selectedId, KIND_SELECTED);
    if (this.hoverIndex !== null && this.data) add(this.data.ids[this.hoverIndex], KIND_SELECTED);
    add(this.hl.queryId, KIND_QUERY);
    list.sort((a, b) => a.kind - b.kind); // strongest drawn last, on top
    this.hiIndices = list;
    this.stats.neighbours = this.hl.neighbourIds.filter((id) => this.idToIndex.has(id)).length;
    this.stats.queryShown = this.hl.queryId !== null && this.idToIndex.has(this.hl.queryId);
    this.stats.highlighted = new Set([...this.hl.neighbourIds, ...(this.stats.queryShown ? [this.hl.queryId] : [])].filter(
      (id) => id !== null && this.idToIndex.has(id),
    )).size;
    if (this.gl && this.data) {
      const buf = new Float32Array(Math.max(1, list.length) * FLOATS);
      list.forEach(({ index, kind }, j) => {
        const c = this.rgb[this.data!.cls[index]] ?? [0.5, 0.5, 0.5];
        buf.set([this.data!.x[index], this.data!.y[index], c[0], c[1], c[2], kind], j * FLOATS);
      });
      this.gl.bindBuffer(this.gl.ARRAY_BUFFER, this.hiBuf);
      this.gl.bufferData(this.gl.ARRAY_BUFFER, buf, this.gl.DYNAMIC_DRAW);
      this.hiCount = list.length;
    }
  }

  private resize() {
    const rect = this.canvas.getBoundingClientRect();
    this.dpr = Math.min(window.devicePixelRatio || 1, 2);
    this.width = Math.max(1, rect.width);
    this.height = Math.max(1, rect.height);
    const w = Math.round(this.width * this.dpr), h = Math.round(this.height * this.dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.drawNow();
  }

  requestDraw() {
    if (this.dirty) return;
    this.dirty = true;
    this.frame = requestAnimationFrame(() => this.drawNow());
  }

  /** Marks the view as moving: frames may draw a sample of the points until it settles. */
  private touch() {
    this.interacting = true;
    clearTimeout(this.interactTimer);
    this.interactTimer = window.setTimeout(() => {
      this.interacting = false;
      this.lastFrameAt = 0;
      this.requestDraw();
    }, 160);
  }

  // Adapts the interaction budget to the frame rate actually achieved.
  private adapt(now: number) {
    const n = this.stats.points;
    if (!this.interacting || n < 20000) return;
    if (this.lastFrameAt > 0) {
      const dt = now - this.lastFrameAt;
      const cur = Math.min(this.budget, n);
      if (dt > 28) this.budget = Math.max(10000, Math.floor(cur * 0.6));
      else if (dt < 20 && cur < n) this.budget = Math.min(n, Math.ceil(cur * 1.25));
    }
    this.lastFrameAt = now;
  }

  drawNow() {
    cancelAnimationFrame(this.frame);
    this.dirty = false;
    const t0 = performance.now();
    this.adapt(t0);
    if (this.gl) this.drawGl(this.gl);
    else if (this.ctx2d) this.draw2d(this.ctx2d);
    this.placeLabels();
    this.stats.frames++;
    this.stats.lastFrameMs = performance.now() - t0;
    this.stats.zoom = this.zoom;
  }

  private dimmed() {
    return this.hl.neighbourIds.length > 0 || this.hl.queryId !== null || this.hl.focusClass !== null;
  }

  private drawGl(gl: WebGLRenderingContext) {
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0.063, 0.078, 0.118, 1); // #10141e
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.data || !this.program) {
      this.stats.drawnPoints = 0;
      return;
    }
    gl.useProgram(this.program);
    gl.enable(gl.BLEND);
    gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    const s = this.fit() * this.zoom;
    const sx = (2 * s) / this.width, sy = (-2 * s) / this.height;
    gl.uniform2f(this.uni.u_scale, sx, sy);
    gl.uniform2f(this.uni.u_offset, -this.cx * sx, -this.cy * sy);
    gl.uniform1f(this.uni.u_size, this.baseSize() * this.dpr);
    gl.uniform1f(this.uni.u_dpr, this.dpr);
    const bind = (buf: WebGLBuffer | null) => {
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.enableVertexAttribArray(this.loc.pos);
      gl.vertexAttribPointer(this.loc.pos, 2, gl.FLOAT, false, FLOATS * 4, 0);
      gl.enableVertexAttribArray(this.loc.color);
      gl.vertexAttribPointer(this.loc.color, 3, gl.FLOAT, false, FLOATS * 4, 8);
      gl.enableVertexAttribArray(this.loc.kind);
      gl.vertexAttribPointer(this.loc.kind, 1, gl.FLOAT, false, FLOATS * 4, 20);
    };
    bind(this.mainBuf);
    gl.uniform1f(this.uni.u_dim, this.dimmed() ? 1 : 0);
    const n = this.data.ids.length;
    const count = this.interacting ? Math.min(n, this.budget) : n;
    gl.drawArrays(gl.POINTS, 0, count);
    if (this.hiCount > 0) {
      bind(this.hiBuf);
      gl.drawArrays(gl.POINTS, 0, this.hiCount);
    }
    this.stats.drawnPoints = count;
    this.stats.lodBudget = Number.isFinite(this.budget) ? this.budget : n;
  }

  private draw2d(ctx: CanvasRenderingContext2D) {
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#10141e';
    ctx.fillRect(0, 0, this.width, this.height);
    const d = this.data;
    if (!d) {
      this.stats.drawnPoints = 0;
      return;
    }
    const size = this.baseSize();
    const r = size / 2;
    ctx.globalAlpha = this.dimmed() ? 0.16 : 0.9;
    const n = d.ids.length;
    const byClass: number[][] = d.classColors.map(() => []);
    for (let i = 0; i < n; i++) byClass[d.cls[i]]?.push(i);
    const s = this.fit() * this.zoom;
    const ox = this.width / 2 - this.cx * s, oy = this.height / 2 - this.cy * s;
    byClass.forEach((list, c) => {
      ctx.fillStyle = d.classColors[c];
      ctx.beginPath();
      for (const i of list) {
        const x = d.x[i] * s + ox, y = d.y[i] * s + oy;
        if (x < -r || y < -r || x > this.width + r || y > this.height + r) continue;
        if (n > 20000) ctx.rect(x - r, y - r, size, size);
        else {
          ctx.moveTo(x + r, y);
          ctx.arc(x, y, r, 0, 2 * Math.PI);
        }
      }
      ctx.fill();
    });
    ctx.globalAlpha = 1;
    for (const { index, kind } of this.hiIndices) {
      const x = d.x[index] * s + ox, y = d.y[index] * s + oy;
      const rr = kind >= KIND_QUERY ? r * 1.15 + 6.5 : kind >= KIND_SELECTED ? r + 5 : kind >= KIND_NEIGHBOUR ? r + 3 : r;
      ctx.beginPath();
      ctx.arc(x, y, rr, 0, 2 * Math.PI);
      ctx.fillStyle = kind >= KIND_NEIGHBOUR ? '#ffffff' : d.classColors[d.cls[index]];
      ctx.fill();
      if (kind >= KIND_QUERY) {
        ctx.beginPath();
        ctx.arc(x, y, rr, 0, 2 * Math.PI);
        ctx.fillStyle = '#828cf7';
        ctx.fill();
        ctx.beginPath();
        ctx.arc(x, y, rr * 0.7, 0, 2 * Math.PI);
        ctx.fillStyle = '#ffffff';
        ctx.fill();
      }
      if (kind >= KIND_NEIGHBOUR) {
        ctx.beginPath();
        ctx.arc(x, y, rr * (kind >= KIND_QUERY ? 0.46 : 0.58), 0, 2 * Math.PI);
        ctx.fillStyle = d.classColors[d.cls[index]];
        ctx.fill();
      }
      if (kind >= KIND_QUERY) {
        ctx.beginPath();
        ctx.arc(x, y, rr * 0.2, 0, 2 * Math.PI);
        ctx.fillStyle = '#111827';
        ctx.fill();
      }
    }
    this.stats.drawnPoints = n;
  }

  private buildGrid() {
    const d = this.data!;
    const n = d.ids.length;
    const g = Math.max(8, Math.min(512, Math.ceil(Math.sqrt(n / 4))));
    const cell = (i: number) => {
      const cx = Math.min(g - 1, Math.max(0, Math.floor(d.x[i] * g)));
      const cy = Math.min(g - 1, Math.max(0, Math.floor(d.y[i] * g)));
      return cy * g + cx;
    };
    const counts = new Uint32Array(g * g + 1);
    for (let i = 0; i < n; i++) counts[cell(i) + 1]++;
    for (let c = 1; c <= g * g; c++) counts[c] += counts[c - 1];
    const items = new Uint32Array(n);
    const fill = counts.slice(0, g * g);
    for (let i = 0; i < n; i++) items[fill[cell(i)]++] = i;
    this.gridSize = g;
    this.cellStart = counts;
    this.cellItems = items;
  }

  /** The point nearest to a canvas position (CSS px) within `radius` px, or null. */
  pick(sx: number, sy: number, radius = 10): number | null {
    const d = this.data;
    if (!d || d.ids.length === 0) return null;
    const s = this.fit() * this.zoom;
    const [x, y] = this.toData(sx, sy);
    const rd = (radius + this.baseSize() / 2) / s;
    const g = this.gridSize;
    const x0 = Math.max(0, Math.floor((x - rd) * g)), x1 = Math.min(g - 1, Math.floor((x + rd) * g));
    const y0 = Math.max(0, Math.floor((y - rd) * g)), y1 = Math.min(g - 1, Math.floor((y + rd) * g));
    let best: number | null = null;
    let bestD = rd * rd;
    // Highlighted points are drawn on top: prefer them.
    for (const { index, kind } of this.hiIndices) {
      if (kind < KIND_NEIGHBOUR) continue;
      const dx = d.x[index] - x, dy = d.y[index] - y;
      const dd = dx * dx + dy * dy;
      if (dd <= bestD) {
        bestD = dd;
        best = index;
      }
    }
    if (best !== null) return best;
    for (let cy = y0; cy <= y1; cy++)
      for (let cx = x0; cx <= x1; cx++) {
        const c = cy * g + cx;
        for (let k = this.cellStart[c]; k < this.cellStart[c + 1]; k++) {
          const i = this.cellItems[k];
          const dx = d.x[i] - x, dy = d.y[i] - y;
          const dd = dx * dx + dy * dy;
          if (dd <= bestD) {
            bestD = dd;
            best = i;
          }
        }
      }
    return best;
  }

  private setHover(index: number | null, clientX: number, clientY: number) {
    if (index !== this.hoverIndex) {
      this.hoverIndex = index;
      this.rebuildHighlight();
      this.requestDraw();
    }
    this.onHover(index, clientX, clientY);
  }

  private installInput() {
    const c = this.canvas;
    let drag: { x: number; y: number; cx: number; cy: number; moved: boolean; id: number } | null = null;
    const local = (e: MouseEvent) => {
      const r = c.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top] as const;
    };
    c.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      cancelAnimationFrame(this.anim);
      this.stats.animating = false;
      const [x, y] = local(e);
      drag = { x, y, cx: this.cx, cy: this.cy, moved: false, id: e.pointerId };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener('pointermove', (e) => {
      const [x, y] = local(e);
      if (drag) {
        const dx = x - drag.x, dy = y - drag.y;
        if (!drag.moved && Math.hypot(dx, dy) > 3) {
          drag.moved = true;
          c.classList.add('dragging');
          this.setHover(null, e.clientX, e.clientY);
        }
        if (drag.moved) {
          this.touch();
          const s = this.fit() * this.zoom;
          this.cx = drag.cx - dx / s;
          this.cy = drag.cy - dy / s;
          this.requestDraw();
        }
        return;
      }
      this.setHover(this.pick(x, y), e.clientX, e.clientY);
    });
    const end = (e: PointerEvent, cancelled: boolean) => {
      if (!drag) return;
      const wasClick = !drag.moved && !cancelled;
      drag = null;
      c.classList.remove('dragging');
      if (wasClick) {
        const [x, y] = local(e);
        const i = this.pick(x, y);
        if (i !== null && this.data) this.onClick(this.data.ids[i]);
      }
    };
    c.addEventListener('pointerup', (e) => end(e, false));
    c.addEventListener('pointercancel', (e) => end(e, true));
    c.addEventListener('pointerleave', (e) => {
      if (!drag) this.setHover(null, e.clientX, e.clientY);
    });
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const [x, y] = local(e);
        const scale = e.deltaMode === 1 ? 0.05 : 0.0018;
        this.zoomAt(x, y, Math.exp(-e.deltaY * scale));
      },
      { passive: false },
    );
    c.addEventListener('dblclick', (e) => {
      const [x, y] = local(e);
      this.zoomAt(x, y, 2);
    });
  }

  zoomAt(sx: number, sy: number, factor: number) {
    cancelAnimationFrame(this.anim);
    this.stats.animating = false;
    this.touch();
    const [dx, dy] = this.toData(sx, sy);
    this.zoom = Math.min(400, Math.max(0.5, this.zoom * factor));
    const s = this.fit() * this.zoom;
    this.cx = dx - (sx - this.width / 2) / s;
    this.cy = dy - (sy - this.height / 2) / s;
    this.requestDraw();
  }

  zoomBy(factor: number) {
    this.zoomAt(this.width / 2, this.height / 2, factor);
  }
}
