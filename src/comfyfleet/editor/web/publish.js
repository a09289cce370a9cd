// "Publish to fleet": publish the open workflow as a new version of a named fleet workflow
// (POST /api/v1/workflows/{name}/versions), with the inputs the user exposes as params.
//
// Served by the balancer at /extensions/comfyfleet/publish.js and listed by GET /extensions,
// so ComfyUI's frontend imports it like a custom node's web extension. Params bind node
// inputs by node title (the fleet's rule, workflows/README.md); each param's type, bounds and
// choices come from /object_info, its default from the value in the graph.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const PARAM = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const SEED_INPUTS = new Set(["seed", "noise_seed"]);
const DIALOG_ID = "comfyfleet-publish";

// The fleet's param spec for one node input, from its /object_info definition and the value
// the graph holds now (the default). null: an input the fleet cannot type (e.g. a link type).
export function paramSpec(inputDef, input, value) {
  if (!Array.isArray(inputDef)) return null;
  const [kind, opts = {}] = inputDef;
  const spec = { default: value };
  if (Array.isArray(kind) || kind === "COMBO") {
    const choices = Array.isArray(kind) ? kind : opts.options || [];
    if (opts.image_upload || input === "image") return { type: "image", default: value };
    return { type: "enum", choices, default: value };
  }
  if (kind === "INT") {
    if (SEED_INPUTS.has(input)) return { type: "seed", default: value };
    spec.type = "integer";
  } else if (kind === "FLOAT") {
    spec.type = "number";
  } else if (kind === "STRING") {
    return { type: "string", default: value };
  } else if (kind === "BOOLEAN") {
    return { type: "boolean", default: value };
  } else {
    return null;
  }
  // Bounds beyond what a double holds exactly (ComfyUI's 0xffffffffffffffff) say nothing.
  if (Number.isFinite(opts.min) && Math.abs(opts.min) <= Number.MAX_SAFE_INTEGER) spec.minimum = opts.min;
  if (Number.isFinite(opts.max) && Math.abs(opts.max) <= Number.MAX_SAFE_INTEGER) spec.maximum = opts.max;
  return spec;
}

// Every node input of the API graph that holds a value (not a link), with its node's title.
function candidates(graph) {
  const titles = {};
  for (const node of Object.values(graph)) {
    const title = node._meta?.title ?? node.class_type;
    titles[title] = (titles[title] || 0) + 1;
  }
  const out = [];
  for (const [id, node] of Object.entries(graph)) {
    const title = node._meta?.title ?? node.class_type;
    for (const [input, value] of Object.entries(node.inputs || {})) {
      if (Array.isArray(value)) continue; // a link
      out.push({ id, title, classType: node.class_type, input, value, unique: titles[title] === 1 });
    }
  }
  return out;
}

async function nodeDef(classType, cache) {
  if (!(classType in cache)) {
    const res = await api.fetchApi(`/object_info/${encodeURIComponent(classType)}`);
    cache[classType] = res.ok ? (await res.json())[classType] : null;
  }
  return cache[classType];
}

function inputDefOf(def, input) {
  const inputs = def?.input || {};
  return inputs.required?.[input] ?? inputs.optional?.[input] ?? null;
}

// The params file (workflows/README.md) for the chosen rows.
async function paramsFile(rows, description) {
  const cache = {};
  const params = {};
  for (const row of rows) {
    if (row.declared) {
      // Published before: keep its spec (type, bounds, text, every binding), so the new
      // version keeps the params contract; the default follows the value in the editor.
      const spec = { ...row.declared };
      if ("default" in spec) spec.default = row.value;
      params[row.param] = spec;
      continue;
    }
    const def = await nodeDef(row.classType, cache);
    const spec = paramSpec(inputDefOf(def, row.input), row.input, row.value);
    if (spec === null) throw new Error(`${row.title} › ${row.input}: no fleet type for this input`);
    spec.bind = [{ node: row.title, input: row.input }];
    params[row.param] = spec;
  }
  return { description, params };
}

// The params file of the workflow's active version, or null when there is no such workflow.
export async function declaration(name) {
  if (!NAME.test(name)) return null;
  const base = `${api.api_base}/api/v1/workflows/${encodeURIComponent(name)}`;
  const res = await fetch(base);
  if (!res.ok) return null;
  const { version } = await res.json();
  const detail = await fetch(`${base}/versions/${version}`);
  return detail.ok ? (await detail.json()).declaration || null : null;
}

// POST the version; resolves to the outcome, or throws an Error carrying the problem detail.
export async function publish({ name, note, description, rows, force = false }) {
  if (!NAME.test(name)) throw new Error(`name: ${JSON.stringify(name)} is not a workflow name (letters, digits, _ and -)`);
  for (const row of rows) {
    if (!PARAM.test(row.param)) throw new Error(`param ${JSON.stringify(row.param)}: letters, digits and _ only`);
    if (!row.unique) throw new Error(`${row.title}: several nodes have this title; give the node a unique title to expose its inputs`);
  }
  const prompt = await app.graphToPrompt();
  const body = {
    graph: prompt.output,
    ui: prompt.workflow,
    params: await paramsFile(rows, description),
    note,
    force,
  };
  const res = await fetch(`${api.api_base}/api/v1/workflows/${encodeURIComponent(name)}/versions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(answer.detail || answer.title || `HTTP ${res.status}`);
    error.status = res.status;
    throw error;
  }
  return answer;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const INPUT_STYLE = { width: "100%", boxSizing: "border-box", padding: "4px", margin: "2px 0 8px" };

// The dialog: name, description, note, one row per node input (expose + param name).
export async function openDialog() {
  document.getElementById(DIALOG_ID)?.remove();
  const prompt = await app.graphToPrompt();
  const rows = candidates(prompt.output);
  const name = el("input", { id: `${DIALOG_ID}-name`, placeholder: "my-workflow", style: INPUT_STYLE });
  const description = el("input", { id: `${DIALOG_ID}-description`, style: INPUT_STYLE });
  const note = el("input", { id: `${DIALOG_ID}-note`, placeholder: "what changed", style: INPUT_STYLE });
  const force = el("input", { type: "checkbox", id: `${DIALOG_ID}-force` });
  const status = el("div", { id: `${DIALOG_ID}-status`, style: { minHeight: "1.5em", margin: "8px 0", whiteSpace: "pre-wrap" } });
  const taken = new Set();
  const table = el("table", { style: { width: "100%", borderCollapse: "collapse" } },
    el("tr", {}, el("th", {}, "Expose"), el("th", { style: { textAlign: "left" } }, "Node › input"),
      el("th", { style: { textAlign: "left" } }, "Value"), el("th", { style: { textAlign: "left" } }, "Param name")));
  const controls = rows.map((row) => {
    let param = row.input;
    for (let n = 2; taken.has(param); n++) param = `${row.input}_${n}`;
    taken.add(param);
    const key = `${row.title}.${row.input}`;
    const check = el("input", { type: "checkbox", "data-param-key": key });
    const paramName = el("input", { value: param, "data-param-name": key, style: { width: "10em" } });
    const label = row.unique ? `${row.title} › ${row.input}` : `${row.title} › ${row.input} (title not unique)`;
    table.append(el("tr", {}, el("td", {}, check), el("td", {}, label),
      el("td", {}, String(row.value).slice(0, 40)), el("td", {}, paramName)));
    return { row, check, paramName, declared: null };
  });
  // Republishing a fleet workflow: tick its params as published, so the contract holds.
  const prefill = async () => {
    const declared = await declaration(name.value.trim()).catch(() => null);
    for (const c of controls) {
      c.check.checked = false;
      c.declared = null;
    }
    if (!declared) return;
    if (!description.value) description.value = declared.description || "";
    for (const [param, spec] of Object.entries(declared.params || {})) {
      const bind = (spec.bind || [])[0];
      const c = bind && controls.find((x) => x.row.title === bind.node && x.row.input === bind.input);
      if (!c) continue;
      c.check.checked = true;
      c.paramName.value = param;
      c.declared = spec;
    }
  };
  name.addEventListener("change", prefill);
  const opened = app.extensionManager?.workflow?.activeWorkflow?.filename;
  if (opened && NAME.test(opened)) {
    name.value = opened;
    await prefill();
  }
  const submit = el("button", { id: `${DIALOG_ID}-submit`, type: "button" }, "Publish");
  const cancel = el("button", { type: "button", onclick: () => overlay.remove() }, "Close");
  submit.addEventListener("click", async () => {
    status.textContent = "Publishing…";
    submit.disabled = true;
    try {
      const chosen = controls.filter((c) => c.check.checked)
        .map((c) => ({ ...c.row, param: c.paramName.value.trim(), declared: c.declared }));
      const out = await publish({
        name: name.value.trim(), note: note.value, description: description.value,
        rows: chosen, force: force.checked,
      });
      status.dataset.version = out.version;
      status.textContent = `Published ${out.name} version ${out.version} (${out.outcome}); ` +
        `live now: POST /api/v1/jobs {"workflow": "${out.name}", "params": {…}}`;
    } catch (error) {
      status.dataset.version = "";
      status.textContent = `Not published: ${error.message}` +
        (error.status === 422 ? "\nTick “publish anyway” to break the contract on purpose." : "");
    } finally {
      submit.disabled = false;
    }
  });
  const box = el("div", {
    style: { background: "var(--comfy-menu-bg, #222)", color: "var(--fg-color, #ddd)", padding: "16px",
      borderRadius: "8px", width: "min(760px, 92vw)", maxHeight: "86vh", overflow: "auto",
      fontFamily: "sans-serif", fontSize: "14px" },
  },
  el("h3", { style: { marginTop: 0 } }, "Publish to fleet"),
  el("label", {}, "Workflow name"), name,
  el("label", {}, "Description"), description,
  el("label", {}, "Note for this version"), note,
  el("div", { style: { margin: "4px 0" } }, "Parameters (bound by node title):"), table,
  el("label", { style: { display: "block", marginTop: "8px" } }, force, " publish anyway if it breaks the params contract"),
  status, el("div", { style: { display: "flex", gap: "8px" } }, submit, cancel));
  const overlay = el("div", {
    id: DIALOG_ID,
    style: { position: "fixed", inset: "0", background: "rgba(0,0,0,0.5)", zIndex: 10000,
      display: "flex", alignItems: "center", justifyContent: "center" },
  }, box);
  document.body.append(overlay);
  name.focus();
}

app.registerExtension({
  name: "comfyfleet.Publish",
  commands: [
    { id: "comfyfleet.Publish", label: "Publish to fleet", icon: "pi pi-cloud-upload", function: openDialog },
  ],
  menuCommands: [{ path: ["Workflow"], commands: ["comfyfleet.Publish"] }],
  async setup() {
    // A button beside the editor's own controls, so publishing is one click away.
    const button = el("button", {
      id: `${DIALOG_ID}-open`, type: "button", title: "Publish this workflow to the fleet",
      onclick: () => openDialog(),
      style: { position: "fixed", top: "48px", right: "12px", zIndex: 1000, padding: "6px 12px",
        borderRadius: "6px", border: "1px solid #4a7", background: "#264", color: "#fff", cursor: "pointer" },
    }, "Publish to fleet");
    document.body.append(button);
  },
});
