// A list of configuration rows with a form to create one, edit one (the form is filled with
// the row and sends PATCH) and delete one (a second press confirms). Used by the admin
// sections for SLA policies, calendars, escalation policies and heartbeat monitors; the
// form and the buttons show only when `writable` (the caller's role may change them).
import { request } from "../api.js";
import { h } from "../dom.js";

function control(prefix, f) {
  const id = `${prefix}-${f.name}`;
  const common = { id, name: f.name, "aria-describedby": f.help ? `${id}-help` : null };
  let input;
  if (f.type === "select") {
    input = h("select", common, f.options.map(([value, text]) => h("option", { value }, text)));
  } else if (f.type === "textarea") {
    input = h("textarea", { ...common, rows: 3, placeholder: f.placeholder });
  } else if (f.type === "checkbox") {
    input = h("input", { ...common, type: "checkbox" });
  } else {
    input = h("input", { ...common, type: f.type || "text", required: f.required, min: f.min, placeholder: f.placeholder });
  }
  const help = f.help ? h("small", { id: `${id}-help`, class: "muted" }, f.help) : null;
  if (f.type === "checkbox") return h("div", { class: "field check" }, input, h("label", { for: id }, f.text), help);
  return h("div", { class: "field" }, h("label", { for: id }, f.text), input, help);
}

function fill(form, fields, row) {
  for (const f of fields) {
    const input = form.elements.namedItem(f.name);
    const value = row ? f.value(row) : f.initial;
    if (f.type === "checkbox") input.checked = Boolean(value);
    else input.value = value ?? (f.type === "select" ? f.options[0][0] : "");
  }
}

function read(form, fields) {
  const values = {};
  for (const f of fields) {
    const input = form.elements.namedItem(f.name);
    values[f.name] = f.type === "checkbox" ? input.checked : input.value.trim();
  }
  return values;
}

// Comma- or line-separated text -> the non-empty parts.
export function parts(text) {
  return String(text || "").split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

export function editor({ key, noun, path, items, columns, fields, toBody, writable, reload }) {
  const error = h("p", { class: "error", role: "alert" });
  const heading = h("h3", {}, `New ${noun}`);
  const submit = h("button", { type: "submit" }, `Create ${noun}`);
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel edit");
  const form = h("form", { class: "card form-grid editor", id: `${key}-form` }, heading, fields.map((f) => control(key, f)), submit, cancel);
  let editing = null;
  const reset = () => {
    editing = null;
    heading.textContent = `New ${noun}`;
    submit.textContent = `Create ${noun}`;
    cancel.hidden = true;
    fill(form, fields, null);
  };
  const edit = (row) => {
    editing = row;
    heading.textContent = `Edit ${row.name}`;
    submit.textContent = `Save ${noun}`;
    cancel.hidden = false;
    fill(form, fields, row);
    form.elements.namedItem(fields[0].name).focus();
  };
  const run = async (fn) => {
    error.textContent = "";
    try {
      await fn();
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = read(form, fields);
    let body;
    try {
      body = toBody(values, editing);
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    run(() => (editing ? request("PATCH", `${path}/${editing.id}`, { body }) : request("POST", path, { body })));
  });
  cancel.addEventListener("click", reset);
  reset();

  const rows = items.map((row) => {
    const del = h("button", { type: "button", class: "secondary" }, `Delete ${row.name}`);
    del.addEventListener("click", () => {
      if (del.dataset.armed) return run(() => request("DELETE", `${path}/${row.id}`));
      del.dataset.armed = "1";
      del.textContent = `Confirm delete ${row.name}`;
    });
    return h("tr", { [`data-${key}`]: row.name },
      columns.map(([, cell]) => h("td", {}, cell(row))),
      writable ? h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => edit(row) }, `Edit ${row.name}`), " ", del) : null);
  });
  const headers = [...columns.map(([text]) => text), ...(writable ? [""] : [])];
  const list = items.length
    ? h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `${noun}s` },
      h("table", {}, h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)))
    : h("p", { class: "muted" }, `No ${noun} yet.`);
  return [list, writable ? form : null, error];
}
