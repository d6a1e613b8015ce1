// The keygate console: sign in with a key, then list, create, show,
// update, revoke, rotate and delete keys through the HTTP API. It can do
// nothing the signed-in key cannot: every action is one API call made
// with that key.

import * as api from "/console/api.js";
import { confirmDialog, field, h, replace, uid, when } from "/console/dom.js";
import { creditsEditor, limitsEditor, lines, parseMetadata, words } from "/console/forms.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const statusBox = document.getElementById("status");
const errorBox = document.getElementById("error");

let catalog = [];
// Bumped by every view: a view whose data arrives after another view took
// the page drops it.
let views = 0;
const listState = { owner: "", name: "", status: "", limit: 25, positions: [{ cursor: null, skip: 0, scanned: 0 }], page: 0 };

function say(text) {
  statusBox.textContent = text;
}

function clearError() {
  errorBox.textContent = "";
  errorBox.hidden = true;
}

function fail(error) {
  if (error instanceof api.ApiError && error.status === 401) {
    signOut();
  }
  errorBox.textContent = error instanceof Error ? error.message : String(error);
  errorBox.hidden = false;
}

function signOut() {
  api.signOut();
  catalog = [];
  nav.hidden = true;
  who.textContent = "";
  render();
}

function focusMain() {
  main.focus();
}

// ---- sign in

function signInView() {
  const input = h("input", { type: "password", id: "sign-in-key", name: "key", autocomplete: "off", spellcheck: "false", required: true });
  const form = h("form", { class: "card narrow", id: "sign-in" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste a keygate key. It stays in this tab's memory only: no cookie, no storage, gone when the tab is closed or reloaded."),
    field("API key", input),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    api.signIn(token);
    try {
      const answer = await api.call("GET", "/v1/scopes");
      catalog = Array.isArray(answer.scopes) ? answer.scopes : [];
    } catch (error) {
      api.signOut();
      fail(error);
      input.focus();
      return;
    }
    clearError();
    nav.hidden = false;
    who.textContent = "Signed in as " + api.shownKey();
    say("Signed in.");
    if (!location.hash || location.hash === "#") location.hash = "#/keys";
    else render();
  });
  replace(main, form);
  input.focus();
}

// ---- the list

function statusBadge(status) {
  return h("span", { class: "badge " + (["active", "expired", "revoked"].includes(status) ? status : "") }, String(status));
}

function keyLink(key) {
  return h("a", { href: "#/key/" + encodeURIComponent(key.id) }, key.name || key.id);
}

// A name or status search walks the API's listing (which filters by owner
// and revocation only) in pages of WALK_PAGE keys, following next_cursor,
// until it holds a page of matches or reaches the end; one step of the
// walk scans at most WALK_CAP keys, then says so and offers to go on.
const WALK_PAGE = 1000;
const WALK_CAP = 50000;

// Aborts the listing request in flight when another list view starts.
let listAbort = null;

function count(n) {
  return Number(n).toLocaleString("en-US");
}

function listParams(limit, cursor) {
  return api.query({
    owner: listState.owner,
    include_revoked: listState.status === "" || listState.status === "revoked" ? "true" : "",
    limit,
    cursor,
  });
}

// One step of a search from `from` ({ cursor, skip, scanned }: the API page
// to fetch, how many of its matches earlier steps showed, how many keys came
// before it). Resolves with the matches, where the next step starts (null at
// the end), how many keys were searched from the start of the listing and
// whether the cap stopped it; or null once another view took the page.
async function searchStep(from, current, signal, progress) {
  const needle = listState.name.toLowerCase();
  const wanted = (key) =>
    (!needle || String(key.name ?? "").toLowerCase().includes(needle)) &&
    (!listState.status || key.status === listState.status);
  const found = [];
  let cursor = from.cursor;
  let skip = from.skip;
  let before = from.scanned;
  let scanned = 0;
  for (;;) {
    const page = await api.call("GET", "/v1/keys" + listParams(WALK_PAGE, cursor), undefined, signal);
    if (!current()) return null;
    const keys = page.keys || [];
    scanned += keys.length;
    const fresh = keys.filter(wanted).slice(skip);
    const room = listState.limit - found.length;
    if (fresh.length > room) {
      found.push(...fresh.slice(0, room));
      return { keys: found, next: { cursor, skip: skip + room, scanned: before }, searched: before + keys.length, capped: false };
    }
    found.push(...fresh);
    before += keys.length;
    if (!page.next_cursor) return { keys: found, next: null, searched: before, capped: false };
    cursor = page.next_cursor;
    skip = 0;
    const next = { cursor, skip: 0, scanned: before };
    if (found.length === listState.limit) return { keys: found, next, searched: before, capped: false };
    if (scanned >= WALK_CAP) return { keys: found, next, searched: before, capped: true };
    progress(before, found.length);
  }
}

async function listView() {
  const mine = ++views;
  if (listAbort) listAbort.abort();
  const abort = new AbortController();
  listAbort = abort;
  const current = () => mine === views;
  const owner = h("input", { type: "search", name: "owner", value: listState.owner, autocomplete: "off" });
  const name = h("input", { type: "search", name: "name", value: listState.name, autocomplete: "off" });
  const status = h("select", { name: "status" },
    ["", "active", "expired", "revoked"].map((s) =>
      h("option", { value: s, selected: s === listState.status }, s === "" ? "any" : s)));
  const limit = h("select", { name: "limit" },
    [10, 25, 50, 100].map((n) => h("option", { value: n, selected: n === listState.limit }, String(n))));
  const form = h("form", { class: "filters", id: "search", role: "search" },
    field("Owner", owner, "exact owner; empty: yours (every owner's with admin:keys)"),
    field("Name contains", name),
    field("Status", status),
    field("Per page", limit),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    listState.owner = owner.value.trim();
    listState.name = name.value.trim();
    listState.status = status.value;
    listState.limit = Number(limit.value) || 25;
    listState.positions = [{ cursor: null, skip: 0, scanned: 0 }];
    listState.page = 0;
    listView();
  });
  const searching = listState.name !== "" || listState.status !== "";
  const progress = h("p", { id: "search-progress", class: "hint" }, searching ? "Searching…" : "Loading…");
  const results = h("div", { id: "results", "aria-busy": "true" }, progress);
  replace(main,
    h("div", { class: "head" }, h("h1", {}, "Keys"), h("a", { class: "button primary", href: "#/new" }, "New key")),
    form, results);
  const from = listState.positions[listState.page];
  let step;
  try {
    if (searching) {
      step = await searchStep(from, current, abort.signal, (searched, matches) => {
        progress.textContent = "Searching… " + count(searched) + " keys searched, " + count(matches) + " match(es) so far.";
      });
    } else {
      const page = await api.call("GET", "/v1/keys" + listParams(listState.limit, from.cursor), undefined, abort.signal);
      step = page && { keys: page.keys || [], next: page.next_cursor ? { cursor: page.next_cursor, skip: 0, scanned: 0 } : null };
    }
  } catch (error) {
    if (!current()) return;
    replace(results);
    results.removeAttribute("aria-busy");
    fail(error);
    return;
  }
  if (!current() || !step) return;
  const keys = step.keys;
  const rows = keys.map((key) => h("tr", {},
    h("td", {}, keyLink(key)),
    h("td", {}, key.owner),
    h("td", {}, h("code", {}, key.display_prefix)),
    h("td", {}, statusBadge(key.status)),
    h("td", {}, (key.scopes || []).join(" ")),
    h("td", {}, key.expires_at ? new Date(key.expires_at).toLocaleDateString() : "never"),
    h("td", {}, key.last_used_at ? new Date(key.last_used_at).toLocaleString() : "—")));
  const previous = h("button", { type: "button", id: "previous-page", disabled: listState.page === 0 }, "Previous page");
  const next = h("button", { type: "button", id: "next-page", disabled: !step.next },
    !searching ? "Next page" : step.capped ? "Keep searching" : "More matches");
  previous.addEventListener("click", () => {
    listState.page -= 1;
    listView();
  });
  next.addEventListener("click", () => {
    listState.positions[listState.page + 1] = step.next;
    listState.page += 1;
    listView();
  });
  let summary = null;
  if (searching) {
    const searched = count(step.searched);
    summary = step.capped
      ? "Searched the first " + searched + " keys without filling this page, and stopped there; narrow the search by owner, or press “Keep searching”."
      : step.next
        ? "Searched the first " + searched + " keys; “More matches” continues from there."
        : "Searched all " + searched + " keys.";
  }
  replace(results,
    keys.length === 0
      ? h("p", { class: "empty" }, searching ? "No key matches." : "No key.")
      : h("div", { class: "table-wrap" }, h("table", { id: "key-table" },
        h("caption", {}, (searching ? "Matching keys, page " : "Keys, page ") + (listState.page + 1)),
        h("thead", {}, h("tr", {}, ["Name", "Owner", "Prefix", "Status", "Scopes", "Expires", "Last used"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows))),
    summary ? h("p", { class: "hint", id: "search-summary", role: step.capped ? "note" : null }, summary) : null,
    h("nav", { class: "pager", "aria-label": "Pages" }, previous, h("span", {}, "Page " + (listState.page + 1)), next));
  results.removeAttribute("aria-busy");
}

// ---- the token, shown once

function tokenView(heading, token, record) {
  ++views;
  const input = h("input", { type: "text", id: "new-token", readonly: true, spellcheck: "false", autocomplete: "off" });
  input.value = token;
  const copy = h("button", { type: "button", id: "copy-token" }, "Copy");
  const done = h("button", { type: "button", class: "primary", id: "dismiss-token" }, "I have stored it");
  const panel = h("section", { class: "card token", id: "token-panel", "aria-labelledby": "token-title" },
    h("h1", { id: "token-title" }, heading),
    h("p", { class: "warning", role: "note" }, "This token is shown once. Copy it now and store it safely: keygate keeps only its fingerprint and cannot show it again."),
    field("Token of " + (record.name || record.id), input),
    h("div", { class: "actions" }, copy, done));
  copy.addEventListener("click", async () => {
    input.focus();
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      say("Token copied to the clipboard.");
    } catch (_) {
      say("The token is selected: press Ctrl+C (⌘C) to copy it.");
    }
  });
  done.addEventListener("click", () => {
    input.value = "";
    panel.remove();
    say("Token dismissed.");
    location.hash = "#/key/" + encodeURIComponent(record.id);
  });
  replace(main, panel);
  input.focus();
  input.select();
}

// ---- create

async function createView() {
  const mine = ++views;
  if (catalog.length === 0) {
    try {
      catalog = (await api.call("GET", "/v1/scopes")).scopes || [];
    } catch (error) {
      fail(error);
    }
    if (mine !== views) return;
  }
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const owner = h("input", { type: "text", name: "owner", maxlength: 128, autocomplete: "off" });
  const description = h("textarea", { name: "description", maxlength: 1024, rows: 2 });
  const organization = h("input", { type: "text", name: "organization", autocomplete: "off" });
  const environment = h("select", { name: "environment" },
    h("option", { value: "" }, "default"), h("option", { value: "live" }, "live"), h("option", { value: "test" }, "test"));
  const scopeBoxes = catalog.map((scope) => {
    const box = h("input", { type: "checkbox", name: "scope", value: scope.name, id: uid("scope") });
    return { box, row: h("div", { class: "check" }, box, h("label", { for: box.id },
      h("code", {}, scope.name), scope.description ? " — " + scope.description : "")) };
  });
  const moreScopes = h("input", { type: "text", name: "scopes", autocomplete: "off", spellcheck: "false" });
  const expiry = h("select", { name: "expires_in" },
    [["", "default"], ["1h", "1 hour"], ["1d", "1 day"], ["1w", "1 week"], ["30d", "30 days"], ["90d", "90 days"], ["1y", "1 year"], ["never", "never"], ["at", "at a date…"]]
      .map(([v, t]) => h("option", { value: v }, t)));
  const expiresAt = h("input", { type: "datetime-local", name: "expires_at" });
  const atField = field("Expires at (your local time)", expiresAt);
  atField.hidden = true;
  expiry.addEventListener("change", () => {
    atField.hidden = expiry.value !== "at";
  });
  const ipAllow = h("textarea", { name: "ip_allow", rows: 2, spellcheck: "false" });
  const ipDeny = h("textarea", { name: "ip_deny", rows: 2, spellcheck: "false" });
  const metadata = h("textarea", { name: "metadata", rows: 3, spellcheck: "false", placeholder: "{\"team\": \"ci\"}" });
  const limits = limitsEditor([]);
  const credits = creditsEditor(null);
  const form = h("form", { class: "card", id: "create-form" },
    h("h1", {}, "New key"),
    h("fieldset", {}, h("legend", {}, "Who"),
      field("Name", name, "1–128 characters, unique among the owner's active keys"),
      field("Owner", owner, "empty: your key's owner; another owner needs admin:keys"),
      field("Description", description),
      field("Organization", organization, "empty: your key's"),
      field("Environment", environment)),
    h("fieldset", { id: "scope-list" }, h("legend", {}, "Scopes"),
      scopeBoxes.length ? scopeBoxes.map((s) => s.row) : h("p", { class: "hint" }, "The server has no scope catalog: type the scopes below."),
      field("Other scopes", moreScopes, "space-separated, e.g. workspaces:read templates:*")),
    h("fieldset", {}, h("legend", {}, "Expiry"),
      field("Lifetime", expiry, "default: the server's default lifetime (90 days unless configured)"),
      atField),
    h("fieldset", {}, h("legend", {}, "Network"),
      field("IP allow list", ipAllow, "addresses or CIDR ranges, one per line; empty: every address"),
      field("IP deny list", ipDeny, "deny wins over allow")),
    h("fieldset", {}, h("legend", {}, "Metadata"),
      field("Metadata (JSON object)", metadata, "at most 4 KiB")),
    h("fieldset", {}, h("legend", {}, "Rate limits"), limits.element),
    h("fieldset", {}, h("legend", {}, "Credits"), credits.element),
    h("div", { class: "actions" }, h("a", { class: "button", href: "#/keys" }, "Cancel"), h("button", { type: "submit", class: "primary" }, "Create key")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const body = { name: name.value };
    try {
      if (owner.value.trim()) body.owner = owner.value.trim();
      if (description.value) body.description = description.value;
      if (organization.value.trim()) body.organization = organization.value.trim();
      if (environment.value) body.environment = environment.value;
      body.scopes = scopeBoxes.filter((s) => s.box.checked).map((s) => s.box.value).concat(words(moreScopes.value));
      if (expiry.value === "at") {
        const at = new Date(expiresAt.value);
        if (!expiresAt.value || Number.isNaN(at.getTime())) throw new Error("Expires at: choose a date and time.");
        body.expires_at = at.toISOString().replace(/\.\d{3}Z$/, "Z");
      } else if (expiry.value) {
        body.expires_in = expiry.value;
      }
      body.ip_allow = lines(ipAllow.value);
      body.ip_deny = lines(ipDeny.value);
      const meta = parseMetadata(metadata.value);
      if (meta !== undefined) body.metadata = meta;
      const rateLimits = limits.value();
      if (rateLimits.length) body.rate_limits = rateLimits;
      const grant = credits.value();
      if (grant) body.credits = grant;
    } catch (error) {
      fail(error);
      return;
    }
    try {
      const created = await api.call("POST", "/v1/keys", body);
      say("Created key " + created.api_key.name + ".");
      tokenView("Key created", created.key, created.api_key);
    } catch (error) {
      fail(error);
    }
  });
  replace(main, form);
  name.focus();
}

// ---- one key

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function changesList(changes) {
  const entries = Object.entries(changes || {});
  if (entries.length === 0) return "—";
  return h("ul", { class: "changes" }, entries.map(([name, change]) =>
    h("li", {}, h("code", {}, name), ": ", JSON.stringify(change && change.from), " → ", JSON.stringify(change && change.to))));
}

function actorText(actor) {
  if (!actor) return "—";
  if (actor.cli) return "CLI (" + actor.cli + ")";
  return (actor.owner || "") + (actor.key_id ? " / " + actor.key_id : "");
}

async function auditSection(id) {
  const section = h("section", { id: "audit", "aria-labelledby": "audit-title" }, h("h2", { id: "audit-title" }, "Audit trail"));
  try {
    const page = await api.call("GET", "/v1/audit" + api.query({ key_id: id, limit: 100 }));
    const records = page.records || [];
    section.appendChild(records.length === 0 ? h("p", {}, "No record.") : h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["When", "Action", "By", "Changes", "Client IP"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, records.map((r) => h("tr", {},
        h("td", {}, when(r.at)), h("td", {}, h("code", {}, r.action)), h("td", {}, actorText(r.actor)),
        h("td", {}, changesList(r.changes)), h("td", {}, r.client_ip || "—")))))));
  } catch (error) {
    section.appendChild(h("p", { class: "hint" }, error.code === "insufficient_scope"
      ? "Your key cannot read the audit log: it needs the scope audit:read."
      : "The audit trail cannot be shown: " + error.message));
  }
  return section;
}

function limitsTable(key) {
  const limits = key.rate_limits || [];
  if (limits.length === 0) return h("p", {}, "No rate limit.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Name", "Limit", "Period", "Shared"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, limits.map((l) => h("tr", {}, h("td", {}, l.name), h("td", {}, String(l.limit)), h("td", {}, String(l.period)), h("td", {}, l.shared ? "yes" : "no"))))));
}

function creditsText(credits) {
  if (!credits) return "unlimited";
  let text = String(credits.remaining) + " remaining";
  if (credits.refill) text += ", set to " + credits.refill.amount + " every " + credits.refill.every;
  return text;
}

async function detailView(id) {
  const mine = ++views;
  let key;
  try {
    key = await api.call("GET", "/v1/keys/" + encodeURIComponent(id));
  } catch (error) {
    if (mine !== views) return;
    replace(main, h("h1", {}, "Key"), h("p", {}, h("a", { href: "#/keys" }, "Back to the keys")));
    fail(error);
    return;
  }
  if (mine !== views) return;
  const edit = h("button", { type: "button", id: "edit-key" }, "Edit");
  const adjust = h("button", { type: "button", id: "adjust-credits" }, "Credits…");
  const rotate = h("button", { type: "button", id: "rotate-key", disabled: key.status !== "active" || !!key.superseded_by }, "Rotate…");
  const revoke = h("button", { type: "button", id: "revoke-key", class: "danger", disabled: key.status === "revoked" }, "Revoke…");
  const remove = h("button", { type: "button", id: "delete-key", class: "danger" }, "Delete…");
  const editArea = h("div", { id: "edit-area" });
  const superseded = key.superseded_by
    ? h("a", { href: "#/key/" + encodeURIComponent(key.superseded_by) }, key.superseded_by) : "—";
  replace(main,
    h("p", {}, h("a", { href: "#/keys" }, "← Keys")),
    h("div", { class: "head" }, h("h1", { id: "key-name" }, key.name), statusBadge(key.status)),
    h("div", { class: "actions", role: "group", "aria-label": "Actions" }, edit, adjust, rotate, revoke, remove),
    editArea,
    h("section", { "aria-labelledby": "facts-title" }, h("h2", { id: "facts-title", class: "visually-hidden" }, "Details"),
      facts([
        ["Description", h("span", { id: "key-description" }, key.description || "—")],
        ["Id", h("code", {}, key.id)],
        ["Prefix", h("code", {}, key.display_prefix)],
        ["Owner", key.owner],
        ["Organization", key.organization || "—"],
        ["Environment", key.environment],
        ["Scopes", (key.scopes || []).join(" ") || "none"],
        ["Created", when(key.created_at)],
        ["Updated", when(key.updated_at)],
        ["Expires", key.expires_at ? when(key.expires_at) : "never"],
        ["Last used", when(key.last_used_at) + (key.last_used_ip ? " from " + key.last_used_ip : "")],
        ["Revoked", key.revoked_at ? when(key.revoked_at) + (key.revoked_reason ? ": " + key.revoked_reason : "") : "—"],
        ["Superseded by", superseded],
        ["IP allow list", (key.ip_allow || []).join(", ") || "every address"],
        ["IP deny list", (key.ip_deny || []).join(", ") || "none"],
        ["Credits", h("span", { id: "key-credits" }, creditsText(key.credits))],
      ])),
    h("section", { "aria-labelledby": "meta-title" }, h("h2", { id: "meta-title" }, "Metadata"),
      h("pre", { id: "key-metadata" }, JSON.stringify(key.metadata || {}, null, 2))),
    h("section", { "aria-labelledby": "limits-title" }, h("h2", { id: "limits-title" }, "Rate limits"), limitsTable(key)));
  const audit = await auditSection(key.id);
  if (mine !== views) return;
  main.appendChild(audit);

  edit.addEventListener("click", () => editForm(key, editArea));
  adjust.addEventListener("click", () => creditsForm(key, editArea));
  revoke.addEventListener("click", async () => {
    const reason = h("input", { type: "text", id: "revoke-reason", maxlength: 256, autocomplete: "off" });
    const yes = await confirmDialog("Revoke " + key.name + "?",
      [h("p", {}, "The key is refused from the next request on. This cannot be undone."), field("Reason (optional)", reason)],
      "Revoke key", true);
    if (!yes) return;
    try {
      const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
      await api.call("POST", "/v1/keys/" + encodeURIComponent(key.id) + "/revoke", body);
      say("Revoked key " + key.name + ".");
      detailView(key.id);
    } catch (error) {
      fail(error);
    }
  });
  rotate.addEventListener("click", async () => {
    const grace = h("input", { type: "text", id: "rotate-grace", autocomplete: "off", placeholder: "0" });
    const yes = await confirmDialog("Rotate " + key.name + "?",
      [h("p", {}, "A new key with the same attributes is created and its token shown once. The old key keeps working for the grace period, then expires."),
        field("Grace period", grace, "e.g. 0, 30min, 12h, 1d; empty: none")],
      "Rotate key", false);
    if (!yes) return;
    try {
      const body = grace.value.trim() ? { grace: grace.value.trim() } : {};
      const created = await api.call("POST", "/v1/keys/" + encodeURIComponent(key.id) + "/rotate", body);
      say("Rotated key " + key.name + ".");
      tokenView("Key rotated", created.key, created.api_key);
    } catch (error) {
      fail(error);
    }
  });
  remove.addEventListener("click", async () => {
    const yes = await confirmDialog("Delete " + key.name + "?",
      h("p", {}, "The key's record is removed for good; its audit records stay. A revoked key stays visible, a deleted one does not."),
      "Delete key", true);
    if (!yes) return;
    try {
      await api.call("DELETE", "/v1/keys/" + encodeURIComponent(key.id));
      say("Deleted key " + key.name + ".");
      location.hash = "#/keys";
    } catch (error) {
      fail(error);
    }
  });
}

function editForm(key, area) {
  const name = h("input", { type: "text", name: "name", value: key.name, required: true, maxlength: 128 });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 1024 });
  description.value = key.description || "";
  const scopes = h("input", { type: "text", name: "scopes", value: (key.scopes || []).join(" "), spellcheck: "false" });
  const ipAllow = h("textarea", { name: "ip_allow", rows: 2, spellcheck: "false" });
  ipAllow.value = (key.ip_allow || []).join("\n");
  const ipDeny = h("textarea", { name: "ip_deny", rows: 2, spellcheck: "false" });
  ipDeny.value = (key.ip_deny || []).join("\n");
  const metadata = h("textarea", { name: "metadata", rows: 4, spellcheck: "false" });
  metadata.value = JSON.stringify(key.metadata || {}, null, 2);
  const limits = limitsEditor(key.rate_limits || []);
  const cancel = h("button", { type: "button" }, "Cancel");
  const form = h("form", { class: "card", id: "edit-form" },
    h("h2", {}, "Edit"),
    field("Name", name),
    field("Description", description),
    field("Scopes", scopes, "space-separated; scopes may only narrow"),
    field("IP allow list", ipAllow, "one per line"),
    field("IP deny list", ipDeny, "one per line"),
    field("Metadata (JSON object)", metadata),
    h("fieldset", {}, h("legend", {}, "Rate limits"), limits.element),
    h("div", { class: "actions" }, cancel, h("button", { type: "submit", class: "primary" }, "Save")));
  cancel.addEventListener("click", () => replace(area));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const body = {};
    try {
      if (name.value !== key.name) body.name = name.value;
      if (description.value !== (key.description || "")) body.description = description.value;
      const newScopes = words(scopes.value);
      if (!same(newScopes, key.scopes || [])) body.scopes = newScopes;
      const allow = lines(ipAllow.value);
      if (!same(allow, key.ip_allow || [])) body.ip_allow = allow;
      const deny = lines(ipDeny.value);
      if (!same(deny, key.ip_deny || [])) body.ip_deny = deny;
      const meta = parseMetadata(metadata.value) || {};
      if (!same(meta, key.metadata || {})) body.metadata = meta;
      const rateLimits = limits.value();
      if (!same(rateLimits, (key.rate_limits || []).map((l) => limits.normalize(l)))) body.rate_limits = rateLimits;
    } catch (error) {
      fail(error);
      return;
    }
    if (Object.keys(body).length === 0) {
      say("Nothing changed.");
      replace(area);
      return;
    }
    try {
      await api.call("PATCH", "/v1/keys/" + encodeURIComponent(key.id), body);
      say("Saved key " + (body.name || key.name) + ".");
      detailView(key.id);
    } catch (error) {
      fail(error);
    }
  });
  replace(area, form);
  name.focus();
}

function creditsForm(key, area) {
  const mode = h("select", { name: "mode" }, h("option", { value: "add" }, "add"), h("option", { value: "set" }, "set to"));
  const amount = h("input", { type: "number", name: "amount", min: 0, max: 1000000000000, step: 1, required: true });
  const cancel = h("button", { type: "button" }, "Cancel");
  const form = h("form", { class: "card", id: "credits-form" },
    h("h2", {}, "Credits"),
    h("p", {}, "Now: " + creditsText(key.credits) + "."),
    field("Change", mode), field("Amount", amount),
    h("div", { class: "actions" }, cancel, h("button", { type: "submit", class: "primary" }, "Apply")));
  cancel.addEventListener("click", () => replace(area));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = {};
      body[mode.value] = Number(amount.value);
      await api.call("POST", "/v1/keys/" + encodeURIComponent(key.id) + "/credits", body);
      say("Credits changed.");
      detailView(key.id);
    } catch (error) {
      fail(error);
    }
  });
  replace(area, form);
  mode.focus();
}

// ---- routing

function render() {
  if (listAbort) listAbort.abort();
  for (const dialog of document.querySelectorAll("dialog")) dialog.remove();
  if (!api.signedIn()) {
    signInView();
    return;
  }
  const hash = location.hash || "#/keys";
  if (hash.startsWith("#/key/")) detailView(decodeURIComponent(hash.slice("#/key/".length)));
  else if (hash === "#/new") createView();
  else listView();
  focusMain();
}

window.addEventListener("hashchange", () => {
  clearError();
  render();
});
document.getElementById("sign-out").addEventListener("click", () => {
  clearError();
  say("Signed out.");
  signOut();
});
render();
