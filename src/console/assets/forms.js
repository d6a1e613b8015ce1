// Form parts shared by the create and edit views: the rate-limit rows,
// the credits fields, and parsing of the text fields.

import { field, h, uid } from "/console/dom.js";

/** Non-empty lines (or comma-separated entries) of `text`. */
export function lines(text) {
  return text.split(/[\n,]/).map((s) => s.trim()).filter((s) => s !== "");
}

/** Whitespace- or comma-separated words of `text`. */
export function words(text) {
  return text.split(/[\s,]+/).filter((s) => s !== "");
}

/** The metadata field: undefined when empty; else a JSON object, or an error naming the field. */
export function parseMetadata(text) {
  if (text.trim() === "") return undefined;
  let value;
  try {
    value = JSON.parse(text);
  } catch (_) {
    throw new Error("Metadata is not valid JSON.");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("Metadata must be a JSON object, e.g. {\"team\": \"ci\"}.");
  }
  return value;
}

/** Rows of rate limits (name, limit, period, shared), at most 8. */
export function limitsEditor(initial) {
  const rows = [];
  const list = h("div", { class: "limit-rows" });
  const add = h("button", { type: "button", class: "add-limit" }, "Add a rate limit");
  const element = h("div", {}, list, add,
    h("small", { class: "hint" }, "Period from 1s to 1d, e.g. 1s, 1min, 1h, 1d. Shared: one bucket for every key of the owner with a limit of that name."));

  function addRow(limit) {
    const n = rows.length + 1;
    const name = h("input", { type: "text", name: "limit-name", value: limit ? limit.name : "", maxlength: 32, autocomplete: "off", spellcheck: "false" });
    const count = h("input", { type: "number", name: "limit-limit", min: 1, max: 1000000000, step: 1, value: limit ? limit.limit : "" });
    const period = h("input", { type: "text", name: "limit-period", value: limit ? limit.period : "", autocomplete: "off", spellcheck: "false" });
    const shared = h("input", { type: "checkbox", name: "limit-shared", id: uid("shared"), checked: !!(limit && limit.shared) });
    const remove = h("button", { type: "button", "aria-label": "Remove rate limit " + n }, "Remove");
    const row = h("div", { class: "limit-row" },
      field("Limit " + n + " name", name), field("Requests", count), field("Per period", period),
      h("div", { class: "check" }, shared, h("label", { for: shared.id }, "shared")),
      remove);
    const entry = { row, name, count, period, shared };
    remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(entry), 1);
      row.remove();
      add.disabled = rows.length >= 8;
      add.focus();
    });
    rows.push(entry);
    list.appendChild(row);
    add.disabled = rows.length >= 8;
    return entry;
  }

  add.addEventListener("click", () => addRow(null).name.focus());
  for (const limit of initial) addRow(limit);

  const normalize = (limit) => {
    const out = { name: limit.name, limit: Number(limit.limit), period: String(limit.period) };
    if (limit.shared) out.shared = true;
    return out;
  };
  return {
    element,
    normalize,
    value() {
      return rows.map((r, i) => {
        if (!r.name.value.trim() || !r.count.value || !r.period.value.trim()) {
          throw new Error("Rate limit " + (i + 1) + ": give a name, a number of requests and a period.");
        }
        return normalize({ name: r.name.value.trim(), limit: r.count.value, period: r.period.value.trim(), shared: r.shared.checked });
      });
    },
  };
}

/** The credits fields: a balance and an optional refill. */
export function creditsEditor(initial) {
  const remaining = h("input", { type: "number", name: "credits-remaining", min: 0, max: 1000000000000, step: 1, value: initial ? initial.remaining : "" });
  const amount = h("input", { type: "number", name: "credits-refill", min: 0, max: 1000000000000, step: 1, value: initial && initial.refill ? initial.refill.amount : "" });
  const every = h("select", { name: "credits-every" },
    [["", "no refill"], ["day", "every day"], ["week", "every week (Monday)"], ["month", "every month (the 1st)"]]
      .map(([v, t]) => h("option", { value: v, selected: !!(initial && initial.refill && initial.refill.every === v) }, t)));
  const element = h("div", { class: "grid" },
    field("Credits", remaining, "empty: unlimited"),
    field("Refill to", amount, "at 00:00 UTC"),
    field("Refill", every));
  return {
    element,
    value() {
      if (remaining.value === "") {
        if (every.value || amount.value) throw new Error("Credits: a refill needs a balance.");
        return undefined;
      }
      const credits = { remaining: Number(remaining.value) };
      if (every.value) {
        if (amount.value === "") throw new Error("Credits: give the amount to refill to.");
        credits.refill = { amount: Number(amount.value), every: every.value };
      }
      return credits;
    },
  };
}
