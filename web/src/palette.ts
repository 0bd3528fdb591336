// Class colours shared by the map, its legend and the result cards.

// 20 colours distinguishable from each other, on the dark map and on white (after Sasha
// Trubetskoy's "20 simple, distinct colours", with the darkest and the near-white ones
// lightened or replaced: white is the map's highlight colour).
const BASE = [
  '#4363d8', '#f58231', '#e6194b', '#42d4f4', '#3cb44b', '#ffe119', '#a05ed8', '#fabed4', '#a8702e', '#469990',
  '#f032e6', '#bfef45', '#dcbeff', '#b0304f', '#aaffc3', '#9a9a2b', '#ffd8b1', '#7b8dff', '#a9a9a9', '#00a087',
];

export function classColor(index: number): string {
  if (index < BASE.length) return BASE[index];
  // Beyond 20: golden-angle hues, alternating lightness.
  const h = (index * 137.508) % 360;
  const l = index % 2 ? 45 : 58;
  return `hsl(${h.toFixed(1)}, 62%, ${l}%)`;
}

/** [r, g, b] in 0..1 of a CSS colour (#rrggbb or hsl()). */
export function rgbOf(css: string): [number, number, number] {
  if (css.startsWith('#')) {
    const n = parseInt(css.slice(1), 16);
    return [((n >> 16) & 255) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255];
  }
  const m = /hsl\(([\d.]+),\s*([\d.]+)%,\s*([\d.]+)%\)/.exec(css);
  if (!m) return [0.5, 0.5, 0.5];
  const h = Number(m[1]) / 360, s = Number(m[2]) / 100, l = Number(m[3]) / 100;
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s;
  const p = 2 * l - q;
  const f = (t: number) => {
    t = (t + 1) % 1;
    if (t < 1 / 6) return p + (q - p) * 6 * t;
    if (t < 1 / 2) return q;
    if (t < 2 / 3) return p + (q - p) * (2 / 3 - t) * 6;
    return p;
  };
  return [f(h + 1 / 3), f(h), f(h - 1 / 3)];
}
