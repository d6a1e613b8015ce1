// The keygate HTTP API, called with the signed-in key.
//
// The key lives in this module's variable only: never in a cookie, in
// local or session storage, or in the URL. Closing or reloading the
// tab forgets it.

let key = null;

/** An answer of the API that is not a success, in plain words. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    super(explain(status, body, fallback));
    this.status = status;
    this.code = body && typeof body.error === "string" ? body.error : null;
    this.field = body && typeof body.field === "string" ? body.field : null;
  }
}

function explain(status, body, fallback) {
  const code = body && typeof body.error === "string" ? body.error : "";
  const message = body && typeof body.message === "string" ? body.message : "";
  switch (code) {
    case "missing_token":
    case "invalid_token":
      return "The key was refused: it is not a valid key, or it was revoked or has expired.";
    case "invalid_request":
      return "The key is not in the expected form. Paste the whole key, without spaces.";
    case "insufficient_scope":
      return "Your key may not do this: it lacks the scope " +
        (body.required ? body.required : "needed") + ".";
    case "ip_not_allowed":
      return "Your key may not be used from this address.";
    case "rate_limited":
      return "Your key has made too many requests; wait a moment and try again.";
    case "credits_exhausted":
      return "Your key has no credits left.";
    case "unavailable":
      return "The key store cannot be reached right now; try again in a moment.";
    case "not_found":
      return "No such key, or it is not visible to your key.";
  }
  if (message) {
    return body.field ? message + " (field: " + body.field + ")" : message;
  }
  return fallback || "The server answered " + status + ".";
}

/** Keeps `token` for this tab's requests. */
export function signIn(token) {
  key = token;
}

/** Forgets the key. */
export function signOut() {
  key = null;
}

/** Whether a key is held. */
export function signedIn() {
  return key !== null;
}

/** The display prefix of the held key (`kg_live_<id>`): never the secret. */
export function shownKey() {
  if (key === null || key.length < 39) return "";
  return key.slice(0, key.length - 38);
}

/**
 * `method path` with the key; the JSON answer, or null for 204. An aborted
 * `signal` (optional) cancels the request: the promise then rejects with
 * the AbortError.
 */
export async function call(method, path, body, signal) {
  if (key === null) throw new ApiError(401, { error: "missing_token" });
  const headers = { Authorization: "Bearer " + key, Accept: "application/json" };
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (signal) init.signal = signal;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (signal && signal.aborted) throw error;
    throw new ApiError(0, null, "The keygate server cannot be reached.");
  }
  if (response.status === 204) return null;
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** A query string of the non-empty `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}
