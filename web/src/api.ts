// The imgsearch JSON API (see openapi.yaml), typed.

export interface ClassCount {
  name: string;
  count: number;
}

export interface Stats {
  count: number;
  model: string;
  layer: string;
  pooling: string;
  metric: string;
  index: string; // the index built (factory string)
  index_requested?: string; // what the database asked for ("auto" or a factory string)
  dim: number;
  vectors_in_index: number;
  change_seq: number;
  database: string;
  root: string;
  classes: ClassCount[];
  map: { status: string; computing: boolean; method?: string; note?: string; error?: string; seconds?: number };
  limits: { max_upload_bytes: number; max_upload_pixels: number; max_k: number; default_k: number };
}

export interface Hit {
  rank: number;
  id: number;
  score: number;
  path: string;
  name: string;
  class: string;
  width?: number;
  height?: number;
}

export interface QueryInfo {
  kind: 'id' | 'upload';
  id?: number;
  path?: string;
  name: string;
  class?: string;
  width: number;
  height: number;
  bytes?: number;
  format?: string;
}

export interface SearchResponse {
  query: QueryInfo;
  k: number;
  results: Hit[];
  timing: { total_ms: number; search_ms: number; decode_ms?: number; embed_ms?: number };
}

export interface MapPoint {
  id: number;
  x: number;
  y: number;
  class: string;
  path: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

async function parse<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const msg =
      body && typeof body === 'object' && 'error' in body ? String((body as { error: unknown }).error) : `HTTP ${res.status}`;
    throw new ApiError(res.status, msg);
  }
  return body as T;
}

async function get<T>(url: string, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { signal, headers: { Accept: 'application/json' } });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'cannot reach the imgsearch server: is `imgsearch serve` still running?');
  }
  return parse<T>(res);
}

export const api = {
  stats: (signal?: AbortSignal) => get<Stats>('/api/stats', signal),
  neighbors: (id: number, k: number, signal?: AbortSignal) =>
    get<SearchResponse>(`/api/neighbors/${encodeURIComponent(String(id))}?k=${k}`, signal),
  searchId: (id: number, k: number, signal?: AbortSignal) =>
    get<SearchResponse>(`/api/search?id=${encodeURIComponent(String(id))}&k=${k}`, signal),
  async searchUpload(file: Blob, name: string, k: number, signal?: AbortSignal): Promise<SearchResponse> {
    const form = new FormData();
    form.append('image', file, name);
    let res: Response;
    try {
      res = await fetch(`/api/search?k=${k}`, { method: 'POST', body: form, signal });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new ApiError(0, 'cannot reach the imgsearch server: is `imgsearch serve` still running?');
    }
    return parse<SearchResponse>(res);
  },
  /** The map, or null while the server is still computing the layout (HTTP 202). */
  async map(signal?: AbortSignal): Promise<{ points: MapPoint[]; method: string } | null> {
    let res: Response;
    try {
      res = await fetch('/api/map', { signal });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new ApiError(0, 'cannot reach the imgsearch server');
    }
    if (res.status === 202) return null;
    const points = await parse<MapPoint[]>(res);
    return { points, method: res.headers.get('X-Map-Method') ?? '' };
  },
  thumbUrl: (id: number) => `/api/thumb/${id}`,
  imageUrl: (id: number) => `/api/image/${id}`,
};
