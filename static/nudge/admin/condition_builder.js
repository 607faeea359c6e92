/* The segment condition builder: edits the condition JSON in the form's textarea as
   rows of rules instead of a raw JSON box, and previews the English sentence, the
   number of matching contacts and a sample of them.

   The JSON tree itself is the state. Edits change its objects in place, so whatever
   the builder does not touch (keys it does not know, node types it cannot show)
   survives loading and saving unchanged. Selects, buttons and checkboxes re-render
   the builder (focus is put back on the same control); typing only updates the tree.
   The language itself is apps/segments/conditions/.

   Reusable: window.NudgeConditionBuilder.init(fieldset, options) mounts a builder on any
   fieldset shaped like the segment page's (data-target: the textarea's id, data-vocabulary-url,
   optional data-preview-url; a .nudge-builder-root and optionally .nudge-sentence,
   .nudge-errors, .nudge-count, .nudge-sample). Each edit also fires "change" on the
   textarea, for the host page. Options:
     editing      the id of the segment being edited (hidden from the segment picker);
                  by default read from the page URL (/<id>/change/)
     vocabulary   a promise of the vocabulary, to share one request between builders
     jsonToggle   show the "Edit as JSON" button (default true)
     watchKind    hide the builder when #id_kind is "static" (default true)
     textarea     the textarea itself, when it is not in the document yet
     datalistParent  where the shared datalists go (default: the fieldset) */
(function () {
  "use strict";

  const TEXT_OPS = ["eq", "ne", "in", "contains", "starts_with", "gt", "gte", "lt", "lte"];
  const NUMBER_OPS = ["eq", "ne", "in", "gt", "gte", "lt", "lte"];
  const DATE_OPS = ["before", "after", "within_past", "more_than_past", "within_future",
    "more_than_future", "anniversary"];
  const PRESENCE_OPS = ["exists", "not_exists"];
  // Which operators each kind of value takes; "any" is a trait or an event property (JSON).
  const OPS = {
    text: [...TEXT_OPS, ...PRESENCE_OPS],
    number: [...NUMBER_OPS, ...PRESENCE_OPS],
    datetime: [...DATE_OPS, ...PRESENCE_OPS],
    any: [...TEXT_OPS, ...DATE_OPS, ...PRESENCE_OPS],
  };
  const OP_LABELS = {
    eq: "is", ne: "is not", in: "is one of", contains: "contains", starts_with: "starts with",
    gt: "is more than", gte: "is at least", lt: "is less than", lte: "is at most",
    exists: "is set", not_exists: "is not set", before: "is before", after: "is after",
    within_past: "is within the last", more_than_past: "is more than",
    within_future: "is within the next", more_than_future: "is more than",
    anniversary: "has its anniversary",
  };
  const DAY_WORDS = {
    within_past: "days", more_than_past: "days ago", within_future: "days",
    more_than_future: "days from now", anniversary: "days from now (0: today)",
  };
  const TEXT_ONLY = new Set(["contains", "starts_with"]);
  const COUNT_OPS = [["gte", "at least"], ["gt", "more than"], ["eq", "exactly"],
    ["ne", "not exactly"], ["lte", "at most"], ["lt", "fewer than"]];
  const SCORE_OPS = [["gte", "is at least"], ["gt", "is more than"], ["eq", "is"],
    ["ne", "is not"], ["lte", "is at most"], ["lt", "is less than"]];
  const UNITS = [["minutes", "minutes"], ["hours", "hours"], ["days", "days"]];
  const VALUE_TYPES = [["text", "text"], ["number", "number"], ["bool", "true / false"]];
  const MAX_STEPS = 5;
  const PREVIEW_DELAY_MS = 300;
  // Used until (or if) the vocabulary arrives; the server's list is apps/segments/conditions/leaves.py.
  const BUILTINS = {
    email: "text", first_name: "text", last_name: "text", phone: "text", timezone: "text",
    locale: "text", user_id: "text", email_consent: "text", score: "number",
    created_at: "datetime", first_seen_at: "datetime", last_seen_at: "datetime",
  };
  const WINDOW = { aria: "Time window", none: "at any time", last: "in the last",
    since: true, fresh: () => ({ last: 7, unit: "days" }) };
  const FIRST_STEP_WINDOW = { ...WINDOW, aria: "When the first step happened", since: false };
  const WITHIN = { aria: "Time limit", none: "with no time limit", last: "within",
    since: false, fresh: () => ({ last: 24, unit: "hours" }) };

  // -- small helpers ----------------------------------------------------------------

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const isGroup = (v) => isObject(v) && (Array.isArray(v.all) || Array.isArray(v.any));
  const groupKey = (g) => ("all" in g ? "all" : "any");
  const isNot = (v) => isObject(v) && !isGroup(v) && "not" in v;
  const optObject = (v) => v === undefined || v === null || isObject(v);
  const fitsWhere = (w) => w === undefined || w === null || (Array.isArray(w) && w.every(
    (f) => isObject(f) && (f.property === undefined || typeof f.property === "string")));
  const key = (path, role) => `${path}|${role}`;
  const show = (v) => (v === null || v === undefined ? ""
    : typeof v === "object" ? JSON.stringify(v) : String(v));

  function numberOrNull(text) {
    const trimmed = String(text).trim();
    const n = Number(trimmed);
    return trimmed === "" || Number.isNaN(n) ? null : n;
  }

  function convert(value, type) {
    if (Array.isArray(value)) return value.map((v) => convert(v, type));
    if (type === "number") return typeof value === "number" ? value : numberOrNull(show(value));
    if (type === "bool") return value === true || value === "true";
    return show(value);
  }

  function typeOfValue(value) {
    const first = Array.isArray(value) ? value[0] : value;
    return typeof first === "number" ? "number" : typeof first === "boolean" ? "bool" : "text";
  }

  /* h("input", {type: "text", on: {input: fn}}, ...children): an element. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    let value;
    for (const [name, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (name === "on") for (const [type, fn] of Object.entries(v)) el.addEventListener(type, fn);
      else if (name === "text") el.textContent = v;
      else if (name === "value") value = v;
      else if (name === "checked" || name === "disabled") el[name] = true;
      else el.setAttribute(name, v === true ? "" : String(v));
    }
    el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    if (value !== undefined) el.value = value;
    return el;
  }

  const word = (text) => h("span", { class: "nudge-word", text });

  /* A select; a current value it does not list (an unknown operator) stays, marked. */
  function selectEl(role, label, options, current, onChange, dataKey) {
    const cur = show(current);
    const opts = options.map(([value, text]) => h("option", { value, text }));
    if (!options.some(([value]) => value === cur)) {
      opts.unshift(h("option", { value: cur, text: cur ? `${cur} (not known)` : "— choose —" }));
    }
    return h("select", { "data-role": role, "aria-label": label, "data-key": dataKey, value: cur,
      on: { change: (e) => onChange(e.target.value) } }, opts);
  }

  function inputEl(role, label, value, onInput, dataKey, extra) {
    return h("input", { type: "text", "data-role": role, "aria-label": label, "data-key": dataKey,
      value: show(value), ...extra, on: { input: (e) => onInput(e.target.value) } });
  }

  function button(role, text, onClick, extra) {
    return h("button", { type: "button", "data-role": role, text, ...extra, on: { click: onClick } });
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // -- the builder --------------------------------------------------------------------

  function editingFromUrl() {
    return Number((location.pathname.match(/\/(\d+)\/change\/?$/) || [])[1]) || null;
  }

  const vocabularies = new Map(); // url -> a promise of its vocabulary (one request per page)

  /* Rule kinds other modules add (each in its own ES module, e.g. condition_topic.js):
     registerRule(name, make), make({ h, word, selectEl, key, changed, vocab }) returning
     { label, render(node, path), create(), fits(node) }. A builder picks them up at
     its next render, so a module loaded after it still counts. */
  const extraRules = new Map();

  function registerRule(name, make) {
    extraRules.set(name, make);
    document.querySelectorAll(".nudge-condition-builder").forEach((el) => el.dispatchEvent(
      new CustomEvent("nudge:rules", { bubbles: false })));
  }

  function fetchVocabulary(url) {
    if (!vocabularies.has(url)) {
      vocabularies.set(url, fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`)))));
    }
    return vocabularies.get(url);
  }

  function init(fieldset, options) {
    const opts = { jsonToggle: true, watchKind: true, ...options };
    fieldset.classList.add("nudge-condition-builder");
    const textarea = opts.textarea || document.getElementById(fieldset.dataset.target);
    const mount = fieldset.querySelector(".nudge-builder-root");
    if (!textarea || !mount) return;
    const out = {
      sentence: fieldset.querySelector(".nudge-sentence"),
      errors: fieldset.querySelector(".nudge-errors"),
      count: fieldset.querySelector(".nudge-count"),
      sample: fieldset.querySelector(".nudge-sample"),
    };
    const editing = opts.editing !== undefined ? opts.editing : editingFromUrl();
    let vocab = { events: [], attributes: [], builtins: [], segments: [], templates: [],
      email_actions: ["sent", "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"],
      consent: ["subscribed"] };
    let kinds = { ...BUILTINS };
    const propertyLists = new Map();
    const chosenType = new WeakMap(); // node -> the value type picked for a still-empty value
    let root = { all: [] };
    let version = 1;
    let wrapped = false; // the stored root was one rule, shown inside a group
    let lastErrors = [];

    // -- loading and saving --

    function load(text) {
      const parsed = text.trim() ? JSON.parse(text) : {};
      const tree = parsed === null ? {} : parsed;
      if (!isObject(tree)) throw new Error("a condition is a JSON object");
      const { version: v, ...rest } = tree;
      version = v === undefined ? 1 : v;
      wrapped = Object.keys(rest).length > 0 && !isGroup(rest);
      root = Object.keys(rest).length === 0 ? { all: [] } : wrapped ? { all: [rest] } : rest;
    }

    function output() {
      const tree = wrapped && Array.isArray(root.all) && root.all.length === 1 ? root.all[0] : root;
      return { version, ...tree };
    }

    function changed() {
      textarea.value = JSON.stringify(output(), null, 2);
      // For the host page; the builder itself listens for "input", so this does not loop.
      textarea.dispatchEvent(new Event("change", { bubbles: true }));
      schedulePreview();
    }

    function update(focusKey) {
      render(focusKey);
      changed();
    }

    function addExtraRules() {
      const helpers = { h, word, selectEl, key, changed, vocab: () => vocab };
      for (const [name, make] of extraRules) {
        if (!Object.prototype.hasOwnProperty.call(RULES, name)) RULES[name] = make(helpers);
      }
    }

    function render(focusKey) {
      addExtraRules();
      const active = document.activeElement;
      const restore = focusKey || (active && mount.contains(active) ? active.dataset.key : null);
      mount.replaceChildren(renderGroup(root, "", true));
      markErrors();
      if (restore) {
        const el = mount.querySelector(`[data-key="${CSS.escape(restore)}"]`);
        if (el) el.focus();
      }
    }

    // -- groups and rows --

    function renderGroup(group, path, isRoot, head) {
      const gkey = groupKey(group);
      const items = group[gkey];
      const prefix = path ? `${path}.` : "";
      // The server names a lone stored rule "condition", and group items "all[0]".
      const itemPath = (i) => (isRoot && wrapped && items.length === 1 ? "condition" : `${prefix}${gkey}[${i}]`);
      const choices = [["all", "all"], ["any", "any"]];
      const match = selectEl("match", "Match all or any of these rules", choices, gkey, (next) => {
        delete group[gkey];
        group[next] = items;
        update();
      }, key(path, "match"));
      const list = h("div", { class: "nudge-items" }, items.map((_, i) => renderItem(items, i, itemPath(i))));
      if (!items.length) {
        list.append(h("p", { class: "nudge-empty", text: isRoot
          ? "No rules yet, so everyone matches. Add a rule to narrow it down."
          : "This group is empty." }));
      }
      const newPath = () => `${prefix}${gkey}[${items.length - 1}]`;
      return h("div", { class: `nudge-group${isRoot ? " nudge-group-root" : ""}`, "data-role": "group",
        role: "group", "aria-label": isRoot ? "Rules" : "Group of rules" },
        h("div", { class: "nudge-group-head" }, head && head[0], word("Match"), match,
          word("of these rules"), head && head[1]),
        list,
        h("div", { class: "nudge-group-actions" },
          button("add-rule", "Add rule", () => {
            items.push(RULES.attribute.create());
            update(key(newPath(), "rule-type"));
          }, { class: "button" }),
          button("add-group", "Add group", () => {
            items.push({ all: [RULES.attribute.create()] });
            update(key(newPath(), "match"));
          }, { class: "button" })));
    }

    function renderItem(items, i, path) {
      const node = items[i];
      const negated = isNot(node) && (isGroup(node.not) || (isObject(node.not) && ruleType(node.not) !== null));
      const body = negated ? node.not : node;
      const bodyPath = negated ? `${path}.not` : path;
      const isGroupNode = isGroup(body);
      const remove = button("remove", "×", () => { items.splice(i, 1); update(); },
        { class: "nudge-remove", "aria-label": isGroupNode ? "Remove this group" : "Remove this rule",
          title: isGroupNode ? "Remove this group" : "Remove this rule" });
      const type = isGroupNode ? null : ruleType(body);
      if (!isGroupNode && (type === null || !RULES[type].fits(body))) return rawRow(node, path, remove);
      const not = h("label", { class: "nudge-not" },
        h("input", { type: "checkbox", "data-role": "not", "data-key": key(path, "not"), checked: negated,
          "aria-label": "Not (match contacts for whom this is false)",
          on: { change: (e) => { items[i] = e.target.checked ? { not: body } : body; update(); } } }),
        "not");
      if (isGroupNode) return renderGroup(body, bodyPath, false, [not, remove]);
      const row = h("div", { class: "nudge-rule", "data-role": "rule", "data-path": path, "data-type": type });
      const types = Object.entries(RULES).map(([name, r]) => [name, r.label]);
      const typeSelect = selectEl("rule-type", "Rule type", types, type, (next) => {
        const fresh = RULES[next].create();
        if (negated) node.not = fresh; else items[i] = fresh;
        update();
      }, key(path, "rule-type"));
      row.append(not, typeSelect, h("div", { class: "nudge-fields" }, RULES[type].render(body, bodyPath, row)), remove);
      return row;
    }

    function rawRow(node, path, remove) {
      return h("div", { class: "nudge-rule nudge-rule-raw", "data-role": "rule", "data-path": path,
        "data-type": "raw" },
        h("div", { class: "nudge-fields" },
          word("The editor cannot show this part; it is kept as it is:"),
          h("pre", { class: "nudge-raw", "data-role": "raw", text: JSON.stringify(node, null, 2) })),
        remove);
    }

    function ruleType(node) {
      return Object.keys(node).find((k) => Object.prototype.hasOwnProperty.call(RULES, k)) || null;
    }

    // -- comparisons: operator and value --

    function attributeKind(name) {
      return Object.prototype.hasOwnProperty.call(kinds, name) ? kinds[name] : "any";
    }

    function valueType(node) {
      return chosenType.get(node) || typeOfValue(node.value);
    }

    function inputKind(node, kind) {
      if (PRESENCE_OPS.includes(node.op)) return "none";
      if (node.op === "before" || node.op === "after") return "date";
      if (DAY_WORDS[node.op]) return "days";
      if (kind === "number") return "number";
      if (kind !== "any" || TEXT_ONLY.has(node.op)) return "text";
      return valueType(node);
    }

    /* After the operator changed: the value in the shape the new operator takes. */
    function adaptValue(node, kind) {
      const op = node.op;
      if (PRESENCE_OPS.includes(op)) { delete node.value; return; }
      if (op === "before" || op === "after") {
        node.value = /^\d{4}-\d{2}-\d{2}/.test(show(node.value)) ? node.value : "";
        return;
      }
      if (DAY_WORDS[op]) {
        node.value = Number.isInteger(node.value) ? node.value : op === "anniversary" ? 0 : null;
        return;
      }
      const type = inputKind(node, kind);
      let value = node.value === undefined ? null : node.value;
      if (op === "in") value = Array.isArray(value) ? value : value === null || value === "" ? [] : [value];
      else if (Array.isArray(value)) value = value.length ? value[0] : null;
      node.value = convert(value, type);
    }

    function comparison(node, path, kind) {
      const op = selectEl("op", "Operator", OPS[kind].map((o) => [o, OP_LABELS[o]]), node.op, (next) => {
        node.op = next;
        adaptValue(node, kind);
        update();
      }, key(path, "op"));
      return [op, ...valueControls(node, path, kind)];
    }

    function valueControls(node, path, kind) {
      const type = inputKind(node, kind);
      if (type === "none") return [];
      const set = (value) => { node.value = value; changed(); };
      const dataKey = key(path, "value");
      const parts = [];
      if (kind === "any" && ["text", "number", "bool"].includes(type) && !TEXT_ONLY.has(node.op)) {
        parts.push(selectEl("value-type", "Type of value", VALUE_TYPES, type, (next) => {
          chosenType.set(node, next);
          node.value = convert(node.value === undefined ? null : node.value, next);
          update();
        }, key(path, "value-type")));
      }
      if (node.op === "in") {
        const values = Array.isArray(node.value) ? node.value : [];
        parts.push(inputEl("value", "Values, separated by commas", values.map(show).join(", "), (text) => {
          set(text.split(",").map((s) => s.trim()).filter(Boolean).map((s) => convert(s, type)));
        }, dataKey, { placeholder: "one, two, three", class: "nudge-wide" }));
      } else if (type === "bool") {
        parts.push(selectEl("value", "Value", [["true", "true"], ["false", "false"]], String(node.value === true),
          (v) => set(v === "true"), dataKey));
      } else if (type === "date") {
        parts.push(inputEl("value", "Date", node.value, set, dataKey, { type: "date" }));
      } else if (type === "days") {
        parts.push(inputEl("value", "Number of days", node.value, (v) => set(numberOrNull(v)), dataKey,
          { type: "number", min: "0", step: "1", class: "nudge-short" }), word(DAY_WORDS[node.op]));
      } else if (type === "number") {
        parts.push(inputEl("value", "Value", node.value, (v) => set(numberOrNull(v)), dataKey,
          { type: "number", step: "any", class: "nudge-short" }));
      } else {
        parts.push(inputEl("value", "Value", node.value, set, dataKey, { placeholder: "value" }));
      }
      return parts;
    }

    // -- shared pieces of event rules --

    function propertyList(eventName) {
      return propertyLists.get(eventName) || "nudge-dl-no-properties";
    }

    /* The event name; property inputs inside scope() follow it with their suggestions. */
    function eventInput(holder, prop, path, scope) {
      return inputEl("event", "Event name", holder[prop], (v) => {
        holder[prop] = v.trim();
        const list = propertyList(holder[prop]);
        scope().querySelectorAll("[data-role=property]").forEach((input) => input.setAttribute("list", list));
        changed();
      }, key(path, "event"), { list: "nudge-dl-events", placeholder: "event, e.g. product_viewed" });
    }

    function whereRows(node, path, eventName) {
      const filters = Array.isArray(node.where) ? node.where : [];
      const rows = filters.map((filter, i) => {
        const here = `${path}.where[${i}]`;
        return h("div", { class: "nudge-filter", "data-role": "filter", "data-path": here },
          word("where"),
          inputEl("property", "Property", filter.property, (v) => { filter.property = v.trim(); changed(); },
            key(here, "property"), { list: propertyList(eventName()), placeholder: "property" }),
          comparison(filter, here, "any"),
          button("remove-where", "×", () => {
            filters.splice(i, 1);
            if (!filters.length) delete node.where;
            update();
          }, { class: "nudge-remove", "aria-label": "Remove this filter", title: "Remove this filter" }));
      });
      return h("div", { class: "nudge-where" }, rows,
        button("add-where", "+ where", () => {
          if (!Array.isArray(node.where)) node.where = [];
          node.where.push({ property: "", op: "eq", value: "" });
          update(key(`${path}.where[${node.where.length - 1}]`, "property"));
        }, { class: "nudge-link", "aria-label": "Add a property filter" }));
    }

    function countControls(node, path) {
      const count = isObject(node.count) ? node.count : { op: "gte", value: 1 };
      const ensure = () => { node.count = count; return count; };
      return [
        selectEl("count-op", "How many times", COUNT_OPS, count.op,
          (v) => { ensure().op = v; changed(); }, key(path, "count-op")),
        inputEl("count-value", "Number of times", count.value, (v) => { ensure().value = numberOrNull(v); changed(); },
          key(path, "count-value"), { type: "number", min: "0", step: "1", class: "nudge-short" }),
        word("times"),
      ];
    }

    /* "at any time" / "in the last N minutes|hours|days" / "since enrollment" on node[prop]. */
    function windowControls(node, prop, path, labels) {
      const current = node[prop];
      const mode = !current ? "none" : current.since === "enrollment" ? "since" : "last";
      const modes = [["none", labels.none], ["last", labels.last]];
      if (labels.since || mode === "since") modes.push(["since", "since entering the workflow"]);
      const parts = [selectEl(prop, labels.aria, modes, mode, (next) => {
        if (next === "none") delete node[prop];
        else node[prop] = next === "since" ? { since: "enrollment" } : labels.fresh();
        update();
      }, key(path, prop))];
      if (mode === "last") {
        parts.push(
          inputEl(`${prop}-last`, `${labels.aria}: how many`, current.last,
            (v) => { current.last = numberOrNull(v); changed(); },
            key(path, `${prop}-last`), { type: "number", min: "1", step: "1", class: "nudge-short" }),
          selectEl(`${prop}-unit`, `${labels.aria}: unit`, UNITS, current.unit || "days",
            (v) => { current.unit = v; changed(); }, key(path, `${prop}-unit`)));
      }
      return parts;
    }

    // -- one renderer per rule type --

    function renderAttribute(node, path) {
      const rest = h("span", { class: "nudge-rest" });
      const fill = () => rest.replaceChildren(...comparison(node, path, attributeKind(node.attribute)));
      fill();
      const name = inputEl("attribute", "Attribute", node.attribute, (v) => {
        const before = attributeKind(node.attribute);
        node.attribute = v.trim();
        const after = attributeKind(node.attribute);
        if (after !== before) {
          if (!OPS[after].includes(node.op)) node.op = OPS[after][0];
          adaptValue(node, after);
          fill();
        }
        changed();
      }, key(path, "attribute"), { list: "nudge-dl-attributes", placeholder: "attribute, e.g. plan" });
      return [name, rest];
    }

    function renderEvent(node, path, row) {
      return [eventInput(node, "event", path, () => row), word("happened"), countControls(node, path),
        windowControls(node, "window", path, WINDOW), whereRows(node, path, () => node.event)];
    }

    function renderSequence(node, path) {
      const steps = node.sequence;
      const list = h("ol", { class: "nudge-steps" }, steps.map((step, i) => {
        const here = `${path}.sequence[${i}]`;
        const item = h("li", { class: "nudge-step", "data-role": "step", "data-path": here });
        item.append(word(i ? "then" : "first"), eventInput(step, "event", here, () => item),
          button("remove-step", "×", () => { steps.splice(i, 1); update(); },
            { class: "nudge-remove", "aria-label": `Remove step ${i + 1}`, title: "Remove this step",
              disabled: steps.length <= 2 }),
          whereRows(step, here, () => step.event));
        return item;
      }));
      const addStep = button("add-step", "Add step", () => {
        steps.push({ event: "" });
        update(key(`${path}.sequence[${steps.length - 1}]`, "event"));
      }, { class: "button", disabled: steps.length >= MAX_STEPS });
      const after = node.not_followed_by;
      const afterPath = `${path}.not_followed_by`;
      const afterBox = h("div", { class: "nudge-line nudge-not-followed", "data-path": afterPath },
        h("label", {},
          h("input", { type: "checkbox", "data-role": "not-followed", "data-key": key(path, "not-followed"),
            checked: Boolean(after),
            on: { change: (e) => {
              if (e.target.checked) node.not_followed_by = { event: "" }; else delete node.not_followed_by;
              update();
            } } }),
          " and not followed by"));
      if (after) {
        afterBox.append(eventInput(after, "event", afterPath, () => afterBox),
          windowControls(after, "within", afterPath, WITHIN), whereRows(after, afterPath, () => after.event));
      }
      return [list, addStep,
        h("div", { class: "nudge-line" }, word("all steps"), windowControls(node, "within", path, WITHIN)),
        h("div", { class: "nudge-line" }, word("the first step"),
          windowControls(node, "window", path, FIRST_STEP_WINDOW)),
        afterBox];
    }

    function renderLastEvent(node, path, row) {
      return [word("the last"), eventInput(node, "last_event", path, () => row), word("has"),
        inputEl("property", "Property", node.property, (v) => { node.property = v.trim(); changed(); },
          key(path, "property"), { list: propertyList(node.last_event), placeholder: "property" }),
        comparison(node, path, "any")];
    }

    function renderSegment(node, path) {
      const options = vocab.segments.filter((s) => s.id !== editing).map((s) => [String(s.id), s.name]);
      return [word("is in the segment"), selectEl("segment", "Segment", options, node.segment,
        (v) => { node.segment = v ? Number(v) : null; changed(); }, key(path, "segment"))];
    }

    function renderEmail(node, path) {
      return [
        word("was"),
        selectEl("email-action", "Email action", vocab.email_actions.map((a) => [a, a]), node.email,
          (v) => { node.email = v; changed(); }, key(path, "email-action")),
        inputEl("template", "Template (empty: any email)", node.template, (v) => {
          if (v.trim()) node.template = v; else delete node.template;
          changed();
        }, key(path, "template"), { list: "nudge-dl-templates", placeholder: "any email" }),
        countControls(node, path), windowControls(node, "window", path, WINDOW),
      ];
    }

    function renderScore(node, path) {
      const rule = node.score;
      return [word("score"),
        selectEl("op", "Operator", SCORE_OPS, rule.op, (v) => { rule.op = v; changed(); }, key(path, "op")),
        inputEl("value", "Score", rule.value, (v) => { rule.value = numberOrNull(v); changed(); }, key(path, "value"),
          { type: "number", step: "any", class: "nudge-short" })];
    }

    function renderConsent(node, path) {
      const picked = Array.isArray(node.consent) ? node.consent : [node.consent];
      const options = [...new Set([...vocab.consent, ...picked])];
      const box = h("span", { class: "nudge-choices", role: "group", "aria-label": "Email consent" });
      box.append(...options.map((status) => h("label", {},
        h("input", { type: "checkbox", "data-role": "consent", "data-key": key(path, `consent-${status}`),
          value: status, checked: picked.includes(status),
          on: { change: () => {
            const now = [...box.querySelectorAll("input:checked")].map((input) => input.value);
            node.consent = now.length === 1 ? now[0] : now;
            changed();
          } } }),
        ` ${status}`)));
      return [word("email consent is"), box];
    }

    // Registered by the key that names the rule in JSON, in the server's order.
    const RULES = {
      attribute: { label: "Attribute", render: renderAttribute,
        create: () => ({ attribute: "", op: "eq", value: "" }),
        fits: (n) => typeof n.attribute === "string" },
      event: { label: "Event count", render: renderEvent,
        create: () => ({ event: "", count: { op: "gte", value: 1 } }),
        fits: (n) => typeof n.event === "string" && fitsWhere(n.where) && optObject(n.count) && optObject(n.window) },
      sequence: { label: "Sequence", render: renderSequence,
        create: () => ({ sequence: [{ event: "" }, { event: "" }] }),
        fits: (n) => Array.isArray(n.sequence) && n.sequence.length > 0
          && n.sequence.every((s) => isObject(s) && typeof s.event === "string" && fitsWhere(s.where))
          && optObject(n.within) && optObject(n.window)
          && (n.not_followed_by === undefined || (isObject(n.not_followed_by)
            && typeof n.not_followed_by.event === "string" && fitsWhere(n.not_followed_by.where)
            && optObject(n.not_followed_by.within))) },
      last_event: { label: "Last event property", render: renderLastEvent,
        create: () => ({ last_event: "", property: "", op: "eq", value: "" }),
        fits: (n) => typeof n.last_event === "string" && typeof n.property === "string" },
      segment: { label: "Segment", render: renderSegment,
        create: () => ({ segment: (vocab.segments.find((s) => s.id !== editing) || { id: null }).id }),
        fits: (n) => n.segment === null || typeof n.segment === "number" },
      email: { label: "Email engagement", render: renderEmail,
        create: () => ({ email: "opened", count: { op: "gte", value: 1 } }),
        fits: (n) => typeof n.email === "string" && (n.template === undefined || typeof n.template === "string")
          && optObject(n.count) && optObject(n.window) },
      score: { label: "Score", render: renderScore,
        create: () => ({ score: { op: "gte", value: null } }),
        fits: (n) => isObject(n.score) },
      consent: { label: "Consent", render: renderConsent,
        create: () => ({ consent: vocab.consent[0] || "subscribed" }),
        fits: (n) => typeof n.consent === "string"
          || (Array.isArray(n.consent) && n.consent.every((c) => typeof c === "string")) },
    };

    // -- preview --

    let previewTimer = null;
    let previewSeq = 0;
    let inFlight = null;

    function schedulePreview() {
      if (!fieldset.dataset.previewUrl) return;
      clearTimeout(previewTimer);
      previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
    }

    async function preview() {
      const mine = ++previewSeq;
      if (inFlight) inFlight.abort();
      inFlight = new AbortController();
      fieldset.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(fieldset.dataset.previewUrl, {
          method: "POST", body: JSON.stringify(output()), credentials: "same-origin", signal: inFlight.signal,
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        });
        const data = await response.json();
        if (mine === previewSeq) showPreview(data);
      } catch (error) {
        if (error.name !== "AbortError" && mine === previewSeq) {
          showPreview({ valid: false, errors: [`The preview failed: ${error.message}`], sentence: "" });
        }
      } finally {
        if (mine === previewSeq) fieldset.removeAttribute("aria-busy");
      }
    }

    function showPreview(data) {
      lastErrors = data.errors || [];
      if (out.sentence) out.sentence.textContent = data.sentence || "";
      if (out.errors) out.errors.replaceChildren(...lastErrors.map((e) => h("span", { class: "nudge-error", text: e })));
      if (!out.count || !out.sample) {
        // no count or sample shown here
      } else if (data.valid && typeof data.count === "number") {
        const noun = data.count === 1 ? "contact matches" : "contacts match";
        out.count.textContent = `${data.count.toLocaleString()} ${noun}`;
        out.sample.replaceChildren(...(data.sample || []).map((c) => h("li", {},
          h("a", { href: c.url, text: c.name && c.name !== c.label ? `${c.name} (${c.label})` : c.label }))));
      } else {
        out.count.textContent = "";
        out.sample.replaceChildren();
      }
      markErrors();
    }

    /* Outline the rows an error names ("all[1].count.value: ..." names all[1]). */
    function markErrors() {
      mount.querySelectorAll("[data-path]").forEach((el) => {
        const path = el.dataset.path;
        const mine = lastErrors.filter((e) => e.startsWith(path) && /^[.:[]/.test(e.slice(path.length)));
        el.classList.toggle("nudge-invalid", mine.length > 0);
        if (mine.length) el.title = mine.join("\n"); else el.removeAttribute("title");
      });
    }

    function showBroken(message) {
      lastErrors = [];
      mount.replaceChildren(h("p", { class: "nudge-broken", text:
        `The condition below is not valid JSON, so the editor cannot show it (${message}). Fix it in the text box.` }));
      if (out.sentence) out.sentence.textContent = "";
      if (out.count) out.count.textContent = "";
      if (out.sample) out.sample.replaceChildren();
    }

    // -- start --

    function datalists() {
      const option = (value, label) => h("option", { value, label });
      propertyLists.clear();
      vocab.events.forEach((e, i) => propertyLists.set(e.name, `nudge-dl-properties-${i}`));
      // The ids are fixed and every builder on a page shares one vocabulary: made once.
      if (document.getElementById("nudge-dl-events")) return;
      const traits = vocab.attributes.map((a) => (attributeKind(a) !== "any" ? `attributes.${a}` : a));
      (opts.datalistParent || fieldset).append(
        h("datalist", { id: "nudge-dl-events" }, vocab.events.map((e) => option(e.name))),
        h("datalist", { id: "nudge-dl-attributes" }, Object.entries(kinds).map(([name, kind]) => option(name, kind)),
          traits.map((name) => option(name, "trait"))),
        h("datalist", { id: "nudge-dl-templates" }, vocab.templates.map((t) => option(t))),
        ...vocab.events.map((e, i) => h("datalist", { id: `nudge-dl-properties-${i}` },
          (e.properties || []).map((p) => option(p)))));
    }

    function fromTextarea() {
      try {
        load(textarea.value);
      } catch (error) {
        showBroken(error.message);
        return false;
      }
      render();
      schedulePreview();
      return true;
    }

    function wireJsonToggle() {
      const toggle = button("toggle-json", "Edit as JSON", () => {
        const hidden = textarea.classList.toggle("nudge-json-hidden");
        toggle.textContent = hidden ? "Edit as JSON" : "Hide JSON";
        toggle.setAttribute("aria-expanded", String(!hidden));
      }, { class: "button nudge-json-toggle", "aria-controls": textarea.id, "aria-expanded": "false" });
      textarea.after(toggle);
      textarea.classList.add("nudge-json-hidden");
      let timer = null;
      textarea.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(fromTextarea, PREVIEW_DELAY_MS);
      });
      return toggle;
    }

    function wireKind() {
      const kind = document.getElementById("id_kind");
      const row = textarea.closest(".form-row");
      const apply = () => {
        const isStatic = Boolean(kind) && kind.value === "static";
        fieldset.classList.toggle("nudge-hidden", isStatic);
        if (row) row.classList.toggle("nudge-hidden", isStatic);
        if (!isStatic) schedulePreview();
      };
      if (kind) kind.addEventListener("change", apply);
      apply();
    }

    function start() {
      // a rule kind registered after this builder drew its rows: draw them again
      fieldset.addEventListener("nudge:rules", () => { if (fieldset.dataset.state === "ready") render(); });
      datalists();
      if (opts.jsonToggle) {
        const toggle = wireJsonToggle();
        if (!fromTextarea()) toggle.click(); // show the broken JSON so it can be fixed
      } else {
        textarea.classList.add("nudge-json-hidden");
        fromTextarea();
      }
      if (opts.watchKind) wireKind();
      fieldset.dataset.state = "ready";
    }

    fieldset.dataset.state = "loading";
    (opts.vocabulary || fetchVocabulary(fieldset.dataset.vocabularyUrl))
      .then((data) => {
        vocab = { ...vocab, ...data };
        if (Array.isArray(data.builtins)) kinds = Object.fromEntries(data.builtins.map((b) => [b.name, b.kind]));
      })
      .catch((error) => console.warn("nudge: no vocabulary for the condition builder:", error.message))
      .finally(start);
  }

  window.NudgeConditionBuilder = { init, registerRule };

  function boot() {
    document.querySelectorAll("#nudge-condition-builder").forEach((fieldset) => init(fieldset));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
