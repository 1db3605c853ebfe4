// Calls to the JSON API of docs/protocol.md, with the CSRF token Django expects.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// Resolves to {ok, status, data}; rejects only when the server cannot be reached.
export async function api(method, url, body, { keepalive = false } = {}) {
  const options = { method, headers: { "X-CSRFToken": csrfToken() }, keepalive };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

// Answers of a proxy, or of a site being restarted: a save that gets one is kept in the
// browser and tried again, as when there is no answer at all.
export const UNAVAILABLE = [502, 503, 504];

export function errorMessage(result) {
  return result.data && result.data.error ? result.data.error.message : `The server answered ${result.status}.`;
}
