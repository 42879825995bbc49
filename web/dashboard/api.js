// api.js — the session and HTTP calls. The token lives in this module's memory only: never
// in a URL, a cookie, localStorage or sessionStorage; a reload logs out.
let token = null;
let onUnauthorized = () => {};

export const session = { role: null, subject: null };

export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }
export function currentToken() { return token; }

function jwtClaims(t) {
  try {
    const p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4)));
  } catch { return null; }
}

export class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function call(method, path, body, tok = token) {
  const headers = { Accept: 'application/json' };
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
  });
  let data = null;
  try { data = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && tok === token && token) onUnauthorized();
    throw new ApiError(r.status, (data && (data.error?.message || data.error)) || `${r.status} ${r.statusText}`);
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);

// Logs in with a bearer token, or with the admin API key (exchanged for a token at
// POST /auth/token, as `p2p token` does; the key itself is then forgotten).
export async function login(secret) {
  secret = secret.trim();
  let t = secret, role = null, subject = null;
  if (secret.startsWith('p2pa_')) {
    const r = await call('POST', '/auth/token', { api_key: secret, name: 'dashboard' }, null);
    t = r.token; role = r.role; subject = r.subject;
  }
  // the token must work here before the page shows anything (and this is the first picture)
  const first = await call('GET', '/api/dashboard/metrics', undefined, t);
  const c = jwtClaims(t) || {};
  token = t;
  session.role = role || c.role || 'viewer';
  session.subject = subject || c.name || c.sub || 'operator';
  return first;
}

export function logout() {
  token = null;
  session.role = session.subject = null;
}
