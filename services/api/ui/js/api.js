// The REST API, with the API key this tab signed in with (sessionStorage: gone with the tab).

const KEY = "cgd.apiKey";

export const auth = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    super(`${status}: ${body && body.error ? body.error : "request failed"}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, params = {}, key = auth.get()) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const response = await fetch(url, { headers: { Authorization: `Bearer ${key}` } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Every page of a list (for the small lists a page shows).
export async function all(path, params = {}, max = 1000) {
  const rows = [];
  let cursor = null;
  do {
    const page = await api(path, { ...params, limit: 200, cursor });
    rows.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && rows.length < max);
  return rows;
}
