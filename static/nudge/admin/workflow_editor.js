/* The workflow editor: the whole definition (trigger, settings, steps) as forms instead
   of a JSON box. The format is docs/workflows.md; the validation is
   apps/workflows/definition.py, reached through apps/workflows/admin/editor.py.

   The definition object itself is the state. Edits change its objects in place, so what
   the editor does not know (a step type another app registers, a key it has no field
   for) survives unchanged, and a definition nobody edits is never rewritten. Buttons and
   selects re-render the editor (focus goes back to the same control); typing only
   updates the definition. Every change is written to the form's textarea at once and,
   a moment later, checked by the server; each error is shown on the step it names.

   Events on the fieldset, for other widgets (a diagram):
     nudge-workflow-change    detail: {definition}
     nudge-workflow-checked   detail: the validate endpoint's answer */
(function () {
  "use strict";

  const VALIDATE_DELAY_MS = 400;
  const TEXTAREA_DELAY_MS = 400;
  const KEY = /^[a-z0-9][a-z0-9_-]{0,59}$/;
  const STEP_ERROR = /^steps\[(\d+)\](?: \([^)]*\))?[.:]?\s*/;
  // Smallest first: a duration stored in several units is shown in the smallest.
  const UNITS = ["seconds", "minutes", "hours", "days"];
  const UNIT_SECONDS = { seconds: 1, minutes: 60, hours: 3600, days: 86400 };
  const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const REENTRY = {
    every_time: "every time the trigger fires",
    while_not_enrolled: "whenever they are not already in it",
    once_per_period: "at most once per period",
    once: "only once, ever",
  };
  const OUTLET_LABELS = {
    next: "Then", yes: "If yes", no: "If no", happened: "If it happens",
    timed_out: "If it times out", holdout: "Holdout",
  };
  // Written in the JSON in this order (readable exports); other keys follow.
  const TOP_ORDER = ["trigger", "entry_condition", "reentry", "goal", "exit_condition",
    "frequency_cap", "quiet_hours", "steps"];
  const STEP_ORDER = ["key", "type", "config", "next"];

  // -- small helpers ----------------------------------------------------------------

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
  const show = (v) => (v === null || v === undefined ? "" : String(v));

  /* h("input", {type: "text", on: {input: fn}}, ...children): an element. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    let value;
    for (const [name, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (name === "on") for (const [type, fn] of Object.entries(v)) el.addEventListener(type, fn);
      else if (name === "text") el.textContent = v;
      else if (name === "value") value = v;
      else if (name === "checked" || name === "disabled" || name === "hidden") el[name] = true;
      else el.setAttribute(name, v === true ? "" : String(v));
    }
    el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    if (value !== undefined) el.value = value;
    return el;
  }

  function button(role, text, onClick, extra) {
    return h("button", { type: "button", "data-role": role, text, ...extra, on: { click: onClick } });
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  /* obj[prop] if it is an object, else a new one that joins obj on sync() once it has keys. */
  function part(obj, prop) {
    const value = isObject(obj[prop]) ? obj[prop] : {};
    return {
      value,
      sync() {
        if (Object.keys(value).length) obj[prop] = value;
        else delete obj[prop];
      },
    };
  }

  function ordered(obj, order) {
    const out = {};
    for (const key of order) if (has(obj, key)) out[key] = obj[key];
    for (const key of Object.keys(obj)) if (!has(out, key)) out[key] = obj[key];
    return out;
  }

  /* A typed value: 3, true, null, "quoted" or JSON stay what they say; the rest is text. */
  function looseValue(text) {
    const trimmed = text.trim();
    if (/^-?\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
    if (trimmed === "true" || trimmed === "false" || trimmed === "null") return JSON.parse(trimmed);
    if (/^["[{]/.test(trimmed)) {
      try { return JSON.parse(trimmed); } catch (error) { return text; }
    }
    return text;
  }

  function showLoose(value) {
    if (typeof value === "string") return looseValue(value) === value ? value : JSON.stringify(value);
    return JSON.stringify(value);
  }

  function durationShown(duration) {
    if (!isObject(duration)) return { amount: "", unit: "hours" };
    const units = UNITS.filter((u) => typeof duration[u] === "number" && duration[u] > 0);
    if (!units.length) return { amount: "", unit: "hours" };
    if (units.length === 1) return { amount: duration[units[0]], unit: units[0] };
    const seconds = units.reduce((sum, u) => sum + duration[u] * UNIT_SECONDS[u], 0);
    return { amount: seconds / UNIT_SECONDS[units[0]], unit: units[0] };
  }

  let uid = 0;
  const nextId = () => `nudge-wf-${++uid}`;

  // -- the editor ---------------------------------------------------------------------

  function init(root) {
    const textarea = document.getElementById(root.dataset.target);
    if (!textarea) return;
    const row = textarea.closest(".form-row") || textarea;
    const mount = h("div", { class: "nudge-wf-root" });
    let vocab = null;
    let stepTypes = {};
    let definition = {};
    let checked = { errors: [], steps: [] }; // the last answer of the validate endpoint
    const stepIds = new WeakMap(); // step -> a stable id, for focus across re-renders
    const linkedAs = new WeakMap(); // step -> the key the other steps' outlets use for it
    const stashedTriggers = {}; // type -> its fields, while another trigger type is tried
    const outletBoxes = new Map(); // step -> its outlets element (refreshed on renames)
    let jsonShown = false;
    let noteText = "";
    let broken = false; // the textarea holds JSON that does not parse: forms are off

    // -- loading and writing --

    function load(text) {
      const parsed = text.trim() ? JSON.parse(text) : null;
      if (parsed !== null && !isObject(parsed)) throw new Error("a workflow is a JSON object");
      definition = parsed || {};
      if (Array.isArray(definition.steps)) {
        definition.steps.forEach((step) => { if (isObject(step)) linkedAs.set(step, step.key); });
      }
    }

    function output() {
      const out = ordered(definition, TOP_ORDER);
      if (Array.isArray(out.steps)) out.steps = out.steps.map((s) => (isObject(s) ? ordered(s, STEP_ORDER) : s));
      return out;
    }

    function changed() {
      textarea.value = JSON.stringify(output(), null, 2);
      root.dispatchEvent(new CustomEvent("nudge-workflow-change", { detail: { definition } }));
      scheduleCheck();
    }

    let conditionVocab = null; // one request for every condition builder of the page

    function conditionVocabulary() {
      if (!conditionVocab) {
        conditionVocab = fetch(root.dataset.conditionVocabularyUrl,
          { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))));
      }
      return conditionVocab;
    }

    function steps() {
      return Array.isArray(definition.steps) ? definition.steps : [];
    }

    function stepId(step) {
      if (!stepIds.has(step)) stepIds.set(step, ++uid);
      return stepIds.get(step);
    }

    // -- rendering --

    function render(focusKey) {
      const active = document.activeElement;
      const restore = focusKey || (active && mount.contains(active) ? active.dataset.key : null);
      outletBoxes.clear();
      if (broken) {
        mount.replaceChildren(toolbar(), h("p", { class: "nudge-wf-empty",
          text: "The forms come back once the JSON above is valid." }));
        return;
      }
      mount.replaceChildren(
        toolbar(),
        h("ul", { class: "nudge-wf-general", "data-role": "general-errors", role: "alert" }),
        section("trigger", "Trigger", triggerFields()),
        section("settings", "Rules", settingsFields()),
        section("steps", "Steps", stepsList()));
      showChecked();
      if (restore) {
        const el = mount.querySelector(`[data-key="${CSS.escape(restore)}"]`);
        if (el) el.focus();
      }
    }

    function update(focusKey) {
      render(focusKey);
      changed();
    }

    function toolbar() {
      return h("div", { class: "nudge-wf-toolbar" },
        h("span", { class: "nudge-wf-note", "data-role": "note", text: noteText }),
        button("toggle-json", jsonShown ? "Hide JSON" : "Show JSON", () => {
          jsonShown = !jsonShown;
          row.classList.toggle("nudge-wf-hidden", !jsonShown);
          render();
          if (jsonShown) textarea.focus();
        }, { class: "button", "aria-controls": textarea.id, "aria-expanded": String(jsonShown),
          "data-key": "toolbar|json" }));
    }

    function section(name, title, body) {
      return h("div", { class: "nudge-wf-section", "data-section": name },
        h("h3", { text: title }), body);
    }

    /* A labelled field; data-path is what the server's errors call it ("trigger.event"). */
    function field(label, control, path, help) {
      const id = control.id || nextId();
      control.id = id;
      return h("div", { class: "nudge-wf-field", "data-path": path },
        h("label", { for: id, text: label }), control,
        help ? h("span", { class: "nudge-wf-help", text: help }) : null);
    }

    function selectEl(dataKey, options, current, onChange, extra) {
      const cur = show(current);
      const opts = options.map(([value, text]) => h("option", { value, text }));
      if (!options.some(([value]) => value === cur)) {
        opts.unshift(h("option", { value: cur, text: cur ? `${cur} (not known)` : "— choose —" }));
      }
      return h("select", { "data-key": dataKey, value: cur, ...extra,
        on: { change: (e) => onChange(e.target.value) } }, opts);
    }

    /* Fields that edit obj; commit() runs after each change (then the textarea is written).
       `key` prefixes the data-key of each control, for focus across re-renders. */
    function fields(obj, commit, pathPrefix, keyPrefix) {
      const done = () => { commit(); changed(); };
      const k = (prop) => `${keyPrefix}|${prop}`;
      const p = (prop) => `${pathPrefix}${prop}`;
      const builders = {
        key: keyPrefix,
        commit,
        text(prop, label, opts = {}) {
          const input = h("input", { type: opts.type || "text", "data-key": k(prop), value: show(obj[prop]),
            list: opts.list, placeholder: opts.placeholder, class: opts.wide ? "nudge-wf-wide" : null,
            on: { input: (e) => {
              const value = opts.raw ? e.target.value : e.target.value.trim();
              if (value === "" && !opts.keepEmpty) delete obj[prop]; else obj[prop] = value;
              done();
            } } });
          return field(label, input, p(prop), opts.help);
        },
        textarea(prop, label, opts = {}) {
          const input = h("textarea", { "data-key": k(prop), rows: opts.rows || 3, value: show(obj[prop]),
            class: "nudge-wf-wide", placeholder: opts.placeholder,
            on: { input: (e) => {
              if (e.target.value === "") delete obj[prop]; else obj[prop] = e.target.value;
              done();
            } } });
          return field(label, input, p(prop), opts.help);
        },
        number(prop, label, opts = {}) {
          const input = h("input", { type: "number", "data-key": k(prop), value: show(obj[prop]),
            step: opts.step || "1", min: opts.min, class: "nudge-wf-short",
            on: { input: (e) => {
              if (e.target.value === "") delete obj[prop]; else obj[prop] = Number(e.target.value);
              done();
            } } });
          return field(label, input, p(prop), opts.help);
        },
        /* A list of names, typed separated by commas. */
        names(prop, label, opts = {}) {
          const current = Array.isArray(obj[prop]) ? obj[prop].join(", ") : show(obj[prop]);
          const input = h("input", { type: "text", "data-key": k(prop), value: current,
            placeholder: opts.placeholder, class: "nudge-wf-wide",
            on: { input: (e) => {
              const names = e.target.value.split(",").map((n) => n.trim()).filter(Boolean);
              if (names.length) obj[prop] = names; else delete obj[prop];
              done();
            } } });
          return field(label, input, p(prop), opts.help);
        },
        time(prop, label, opts = {}) {
          return builders.text(prop, label, { ...opts, type: "time" });
        },
        select(prop, label, options, opts = {}) {
          const current = has(obj, prop) ? obj[prop] : opts.fallback;
          const control = selectEl(k(prop), options, current, (value) => {
            const chosen = opts.parse ? opts.parse(value) : value;
            if (chosen === "" || chosen === null) delete obj[prop]; else obj[prop] = chosen;
            commit();
            if (opts.rerender) update(k(prop)); else changed();
          });
          return field(label, control, p(prop), opts.help);
        },
        duration(prop, label, opts = {}) {
          const shown = durationShown(obj[prop]);
          const amount = h("input", { type: "number", min: "0", step: "any", "data-key": k(prop),
            value: show(shown.amount), class: "nudge-wf-short" });
          const unit = selectEl(k(`${prop}-unit`), UNITS.map((u) => [u, u]), shown.unit, () => set(),
            { "aria-label": `${label}: unit` });
          function set() {
            if (amount.value === "") delete obj[prop];
            else obj[prop] = { [unit.value]: Number(amount.value) };
            done();
          }
          amount.addEventListener("input", set);
          const box = field(label, amount, p(prop), opts.help);
          amount.after(unit);
          return box;
        },
        /* A condition, edited with the segment condition builder (condition_builder.js) in a
           small fieldset of its own around a hidden textarea holding the condition's JSON.
           An empty condition removes the key ({} with opts.keepEmpty). Without the builder
           (its script or its URL missing), the plain JSON box. */
        condition(prop, label, opts = {}) {
          const builder = window.NudgeConditionBuilder;
          if (!builder || !root.dataset.conditionVocabularyUrl) return builders.json(prop, label, opts);
          const current = has(obj, prop) ? obj[prop] : null;
          const isEmpty = current === null || (isObject(current) && !Object.keys(current).some((k) => k !== "version"));
          const store = h("textarea", { id: nextId(), "data-role": "condition-json", class: "nudge-wf-json nudge-json-hidden",
            rows: 6, spellcheck: "false", "aria-label": `${label} (JSON)`,
            value: isEmpty ? "" : JSON.stringify(current, null, 2) });
          const box = h("fieldset", { class: "nudge-wf-condition", "data-role": "condition", "data-prop": prop,
            "aria-label": label, "data-target": store.id,
            "data-vocabulary-url": root.dataset.conditionVocabularyUrl,
            "data-preview-url": root.dataset.conditionPreviewUrl },
          h("div", { class: "nudge-builder-root" }), store,
          h("p", { class: "nudge-sentence", "aria-live": "polite" }),
          h("p", { class: "nudge-errors", role: "alert" }));
          const write = () => {
            const text = store.value.trim();
            let value = null;
            if (text) {
              try { value = JSON.parse(text); } catch (error) { return; } // the builder says so
            }
            const empty = value === null || (isObject(value)
              && !Object.keys(value).some((k) => k !== "version" && !(Array.isArray(value[k]) && !value[k].length)));
            if (!empty) obj[prop] = value;
            else if (opts.keepEmpty) obj[prop] = {};
            else delete obj[prop];
            done();
          };
          store.addEventListener("change", write); // each edit in the builder
          store.addEventListener("input", write); // typed in its JSON box
          builder.init(box, { editing: null, textarea: store, watchKind: false, datalistParent: root,
            vocabulary: conditionVocabulary() });
          return h("div", { class: "nudge-wf-field nudge-wf-field-condition", "data-path": p(prop) },
            h("span", { class: "nudge-wf-label", text: label }), box,
            opts.help ? h("span", { class: "nudge-wf-help", text: opts.help }) : null);
        },
        /* Any JSON value, for what has no form (conditions, filters, unknown types). */
        json(prop, label, opts = {}) {
          const text = has(obj, prop) ? JSON.stringify(obj[prop], null, 2) : "";
          const problem = h("span", { class: "nudge-wf-json-error", "data-role": "json-error" });
          const input = h("textarea", { "data-key": k(prop), "data-role": "json", class: "nudge-wf-json",
            rows: Math.min(8, Math.max(2, text.split("\n").length)), value: text, spellcheck: "false",
            placeholder: opts.placeholder,
            on: { input: (e) => {
              const value = e.target.value.trim();
              if (value === "") {
                delete obj[prop];
              } else {
                try {
                  obj[prop] = JSON.parse(value);
                } catch (error) {
                  problem.textContent = "not valid JSON yet (the last valid value is kept)";
                  return;
                }
              }
              problem.textContent = "";
              done();
            } } });
          const box = field(label, input, p(prop), opts.help);
          box.append(problem);
          return box;
        },
      };
      return builders;
    }

    // -- the trigger --

    const datalistOf = (name) => `nudge-wf-dl-${name}`;

    function propertiesList(eventName) {
      const index = (vocab.events || []).findIndex((e) => e.name === eventName);
      return index >= 0 ? datalistOf(`properties-${index}`) : null;
    }

    function triggerEvent() {
      const trigger = definition.trigger;
      return isObject(trigger) && trigger.type === "event" ? trigger.event : null;
    }

    const TRIGGER_FORMS = {
      event: (f, t) => [
        f.text("event", "Event", { list: datalistOf("events"), placeholder: "e.g. add_to_cart" }),
        f.text("key", "Key property", { list: propertiesList(t.event),
          placeholder: "e.g. cart_id", help: "The property later steps match on (optional)." }),
        f.json("where", "Property filters", { help: "A list of filters on the event's properties, as JSON; empty: any." }),
      ],
      segment_entered: (f) => [segmentField(f)],
      segment_exited: (f) => [segmentField(f)],
      email: (f) => [
        f.select("action", "Action", vocab.email_actions.map((a) => [a, a])),
        f.select("template", "Template", [["", "any email"], ...vocab.templates.map((t) => [t, t])]),
      ],
      score: (f) => [f.number("threshold", "Threshold", { help: "When the score crosses it upwards." })],
      date: (f) => [
        f.text("attribute", "Date attribute", { list: datalistOf("attributes"), placeholder: "e.g. birthday" }),
        f.number("days_before", "Days before", { min: "0" }),
      ],
      relative: (f) => [
        f.text("attribute", "Date attribute", { list: datalistOf("attributes"), placeholder: "e.g. signed_up_at" }),
        f.number("days_after", "Days after", { help: "Negative: before." }),
      ],
      schedule: (f) => [
        f.text("cron", "Cron", { placeholder: "0 9 * * 1", help: "In each contact's time zone." }),
        f.condition("audience", "Audience", { help: "Who is enrolled when it runs; no rules: everyone." }),
      ],
      inactivity: (f) => [f.number("days", "Days without an event", { min: "1" })],
      manual: () => [h("p", { class: "nudge-wf-help", text: "Contacts are enrolled from their admin page or through the API." })],
    };

    function segmentField(f) {
      return f.select("segment", "Segment", vocab.segments.map((s) => [String(s.id), s.name]),
        { parse: (v) => (v === "" ? null : Number(v)) });
    }

    function triggerFields() {
      const trigger = isObject(definition.trigger) ? definition.trigger : null;
      const type = trigger ? trigger.type : "";
      const options = vocab.trigger_types.map((t) => [t.name, t.label]);
      const typeSelect = selectEl("trigger|type", options, type, (next) => {
        if (trigger && trigger.type) stashedTriggers[trigger.type] = trigger;
        definition.trigger = stashedTriggers[next] || { type: next };
        update("trigger|type");
      });
      const parts = [field("When", typeSelect, "trigger.type")];
      if (trigger && type) {
        const f = fields(trigger, () => {}, "trigger.", "trigger");
        const form = TRIGGER_FORMS[type];
        if (form) parts.push(...form(f, trigger));
        else parts.push(rawObject(trigger, ["type"], "trigger", "Fields (unknown trigger type)"));
        if (form && firedByEvent(type)) parts.push(maxAgeField(f));
      }
      return h("div", { class: "nudge-wf-fields" }, parts);
    }

    function firedByEvent(type) {
      const known = vocab.trigger_types.find((t) => t.name === type);
      return Boolean(known && known.kind === "event");
    }

    /* Every trigger fired by an event ignores events older than this (a late or
       back-filled batch); the server's default applies when it is empty. */
    function maxAgeField(f) {
      const fallback = vocab.default_max_age ? `; empty: ${vocab.default_max_age}` : "";
      return f.duration("max_age", "Maximum event age",
        { help: `Older events (by their timestamp) do not start a run${fallback}.` });
    }

    /* obj's keys other than `except`, edited as one JSON object. */
    function rawObject(obj, except, path, label) {
      const rest = Object.fromEntries(Object.entries(obj).filter(([key]) => !except.includes(key)));
      const holder = { rest };
      const f = fields(holder, () => {
        for (const key of Object.keys(obj)) if (!except.includes(key)) delete obj[key];
        if (isObject(holder.rest)) Object.assign(obj, holder.rest);
      }, `${path}.`, path);
      return f.json("rest", label, { help: "The editor has no form for this; it is kept as it is." });
    }

    // -- workflow-wide rules --

    function settingsFields() {
      const conditions = fields(definition, () => {}, "", "settings");
      return h("div", { class: "nudge-wf-fields" },
        conditions.condition("entry_condition", "Entry condition",
          { help: "Who may enter; no rules: anyone." }),
        reentryFields(),
        goalFields(),
        conditions.condition("exit_condition", "Exit condition",
          { help: "Checked before every step: a match leaves the workflow; no rules: none." }),
        capFields(),
        quietFields());
    }

    function reentryFields() {
      const reentry = part(definition, "reentry");
      const f = fields(reentry.value, reentry.sync, "reentry.", "reentry");
      const rules = (vocab.reentry_rules || Object.keys(REENTRY)).map((r) => [r, REENTRY[r] || r]);
      const parts = [f.select("rule", "Re-entry", rules, { fallback: "every_time", rerender: true,
        help: "How often one contact may enter." })];
      if (reentry.value.rule === "once_per_period") parts.push(f.number("days", "Period (days)", { min: "1" }));
      return h("div", { class: "nudge-wf-group" }, parts);
    }

    function goalFields() {
      const goal = part(definition, "goal");
      const value = goal.value;
      const mode = has(value, "event") ? "event" : has(value, "condition") ? "condition" : Object.keys(value).length ? "event" : "";
      const modeSelect = selectEl("goal|mode", [["", "no goal"], ["event", "an event happens"],
        ["condition", "a condition becomes true"]], mode, (next) => {
        if (next === "") delete definition.goal;
        else if (next === "event") { delete value.condition; value.event = value.event || ""; goal.sync(); }
        else { delete value.event; delete value.match_key; delete value.where; value.condition = value.condition || {}; goal.sync(); }
        update("goal|mode");
      });
      const parts = [field("Goal", modeSelect, "goal",
        "Reaching it ends the run as converted (checked before every step).")];
      const f = fields(value, goal.sync, "goal.", "goal");
      if (mode === "event") {
        parts.push(
          f.text("event", "Goal event", { list: datalistOf("events"), keepEmpty: true, placeholder: "e.g. order_completed" }),
          f.text("match_key", "Matching", { list: propertiesList(triggerEvent()), placeholder: "e.g. cart_id",
            help: "Only an event with the trigger event's value of this property counts (optional)." }),
          f.json("where", "Goal event filters", { help: "Filters on its properties, as JSON; empty: any." }));
      } else if (mode === "condition") {
        parts.push(f.condition("condition", "Goal condition", { keepEmpty: true }));
      }
      if (mode) parts.push(f.number("within_days", "Within (days)", { min: "1", help: "The conversion window (optional)." }));
      return h("div", { class: "nudge-wf-group" }, parts);
    }

    function capFields() {
      const cap = part(definition, "frequency_cap");
      const f = fields(cap.value, cap.sync, "frequency_cap.", "cap");
      return h("div", { class: "nudge-wf-group nudge-wf-inline" },
        f.number("max", "Frequency cap: at most", { min: "1", help: "emails (any workflow or campaign)" }),
        f.number("hours", "per (hours)", { min: "1" }));
    }

    function quietFields() {
      const quiet = part(definition, "quiet_hours");
      const f = fields(quiet.value, quiet.sync, "quiet_hours.", "quiet");
      return h("div", { class: "nudge-wf-group nudge-wf-inline" },
        f.time("start", "Quiet hours from"),
        f.time("end", "until", { help: "In each contact's time zone." }),
        f.select("mode", "A send in quiet hours is", [["defer", "deferred to their end"], ["skip", "skipped"]],
          { fallback: "defer" }));
    }

    // -- steps --

    function typeLabel(type) {
      return stepTypes[type] ? stepTypes[type].label : `Unknown type “${type}”`;
    }

    function freshKey(type) {
      const taken = new Set(steps().map((s) => (isObject(s) ? s.key : null)));
      const base = String(type).replace(/_/g, "-").replace(/[^a-z0-9-]/g, "") || "step";
      let key = base;
      for (let n = 2; taken.has(key); n++) key = `${base}-${n}`;
      return key;
    }

    function freshConfig(type) {
      if (type === "split") return { variants: [{ name: "A", weight: 50 }, { name: "B", weight: 50 }] };
      if (type === "wait_until_time") return { time: "09:00" };
      return {};
    }

    function addStep(type) {
      if (!Array.isArray(definition.steps)) definition.steps = [];
      const config = freshConfig(type);
      const step = { key: freshKey(type), type, config };
      const outlets = outletNames(step);
      if (outlets.length) step.next = Object.fromEntries(outlets.map((o) => [o, ""]));
      linkedAs.set(step, step.key);
      definition.steps.push(step);
      update(`step${stepId(step)}|key`);
    }

    function removeStep(index) {
      const [gone] = definition.steps.splice(index, 1);
      const key = isObject(gone) ? linkedAs.get(gone) : null;
      if (key) relink(key, "");
      update();
    }

    function moveStep(index, by) {
      const list = definition.steps;
      const [step] = list.splice(index, 1);
      list.splice(index + by, 0, step);
      update(`step${stepId(step)}|${by < 0 ? "up" : "down"}`);
    }

    /* Point every outlet that leads to `from` at `to` ("" = the end). */
    function relink(from, to) {
      for (const step of steps()) {
        if (!isObject(step) || !isObject(step.next)) continue;
        for (const [outlet, target] of Object.entries(step.next)) if (target === from) step.next[outlet] = to;
      }
    }

    function stepsList() {
      if (has(definition, "steps") && !Array.isArray(definition.steps)) {
        return fields(definition, () => {}, "", "steps").json("steps", "Steps (not a list)");
      }
      const list = h("ol", { class: "nudge-wf-steps" }, steps().map((step, i) => stepCard(step, i)));
      const empty = steps().length ? null : h("p", { class: "nudge-wf-empty",
        text: "No steps yet. The first step is where every run starts." });
      const picker = selectEl("add|type", vocab.step_types.map((t) => [t.name, t.label]), "", () => {},
        { "aria-label": "New step type", "data-role": "new-step-type" });
      const add = button("add-step", "Add step", () => {
        if (picker.value) addStep(picker.value);
      }, { class: "button", "data-key": "add|button" });
      return h("div", {}, list, empty,
        h("div", { class: "nudge-wf-add" }, h("span", { class: "nudge-wf-label", text: "New step" }), picker, add));
    }

    function stepCard(step, index) {
      const count = steps().length;
      if (!isObject(step)) {
        const holder = fields(definition.steps, () => {}, "", `raw${index}`);
        return h("li", { class: "nudge-wf-step", "data-role": "step", "data-index": index },
          h("ul", { class: "nudge-wf-errors", "data-role": "step-errors", role: "alert" }),
          holder.json(index, `Step ${index + 1} (not an object)`));
      }
      const id = stepId(step);
      const keyInput = h("input", { type: "text", "data-key": `step${id}|key`, "data-role": "step-key",
        value: show(step.key), "aria-label": `Key of step ${index + 1}`, class: "nudge-wf-key",
        on: { input: (e) => renameStep(step, e.target.value.trim(), e.target) } });
      const head = h("div", { class: "nudge-wf-step-head" },
        h("span", { class: "nudge-wf-step-number", text: `${index + 1}` }),
        h("strong", { class: "nudge-wf-step-type", text: typeLabel(step.type) }),
        index === 0 ? h("span", { class: "nudge-wf-badge", text: "entry" }) : null,
        h("span", { class: "nudge-wf-key-field", "data-path": "key" }, h("span", { text: "key" }), keyInput),
        h("span", { class: "nudge-wf-describe", "data-role": "describe" }),
        h("span", { class: "nudge-wf-step-actions" },
          button("up", "↑", () => moveStep(index, -1), { "aria-label": `Move step ${index + 1} up`,
            title: "Move up", disabled: index === 0, "data-key": `step${id}|up`, class: "nudge-wf-icon" }),
          button("down", "↓", () => moveStep(index, 1), { "aria-label": `Move step ${index + 1} down`,
            title: "Move down", disabled: index === count - 1, "data-key": `step${id}|down`, class: "nudge-wf-icon" }),
          button("remove", "×", () => removeStep(index), { "aria-label": `Remove step ${index + 1}`,
            title: "Remove this step", "data-key": `step${id}|remove`, class: "nudge-wf-icon nudge-wf-remove" })));
      const outlets = h("div", { class: "nudge-wf-outlets", "data-path": "next" });
      outletBoxes.set(step, outlets);
      const config = part(step, "config");
      // A split's outlets are its variants (and holdout): redraw them as they change.
      const f = fields(config.value, () => { config.sync(); fillOutlets(step, outlets); }, "config.", `step${id}`);
      const form = STEP_FORMS[step.type];
      const body = form ? form(f, config.value, step)
        : [fields(step, () => {}, "", `step${id}`).json("config", "Config",
          { help: "No form for this step type; it is kept as it is." })];
      fillOutlets(step, outlets);
      return h("li", { class: "nudge-wf-step", "data-role": "step", "data-index": index,
        "data-type": show(step.type), "data-step-key": show(step.key) },
        head, h("ul", { class: "nudge-wf-errors", "data-role": "step-errors", role: "alert" }),
        h("div", { class: "nudge-wf-fields" }, body), outlets);
    }

    function renameStep(step, key, input) {
      step.key = key;
      input.closest("[data-role=step]").dataset.stepKey = key;
      input.classList.toggle("nudge-wf-bad", !KEY.test(key));
      // Outlets follow a rename, but never onto another step's key: while the new key
      // is taken (or empty), they keep the last one that was this step's alone.
      const others = steps().filter((s) => s !== step && isObject(s)).map((s) => s.key);
      if (KEY.test(key) && !others.includes(key)) {
        const before = linkedAs.get(step);
        if (before && before !== key) relink(before, key);
        linkedAs.set(step, key);
      }
      refreshOutlets();
      changed();
    }

    // -- outlets --

    function outletNames(step) {
      const type = stepTypes[step.type];
      const config = isObject(step.config) ? step.config : {};
      if (step.type === "split") {
        const names = (Array.isArray(config.variants) ? config.variants : [])
          .map((v) => (isObject(v) ? v.name : null)).filter((n) => typeof n === "string" && n);
        return config.holdout ? [...names, "holdout"] : names;
      }
      if (!type) return isObject(step.next) ? Object.keys(step.next) : [];
      if (!type.dynamic_outlets) return type.outlets;
      // Another app's type with outlets that depend on its config: as the server last said.
      const index = steps().indexOf(step);
      const seen = checked.steps && checked.steps[index];
      return seen && seen.key === step.key && Array.isArray(seen.outlets) ? seen.outlets : [];
    }

    function refreshOutlets(only) {
      for (const [step, box] of outletBoxes) if (!only || only(step)) fillOutlets(step, box);
    }

    function byServer(step) {
      const type = stepTypes[step.type];
      return Boolean(type && type.dynamic_outlets && step.type !== "split");
    }

    function fillOutlets(step, box) {
      const names = outletNames(step);
      const next = isObject(step.next) ? step.next : {};
      const stale = Object.keys(next).filter((name) => !names.includes(name));
      const targets = steps().filter((s) => s !== step && isObject(s) && typeof s.key === "string" && s.key)
        .map((s) => [s.key, `${s.key} (step ${steps().indexOf(s) + 1})`]);
      const rows = [...names, ...stale].map((name) => {
        const label = OUTLET_LABELS[name] || (step.type === "split" ? `Variant “${name}”` : name);
        const known = names.includes(name);
        const choose = selectEl(`step${stepId(step)}|outlet-${name}`, [["", "(end)"], ...targets], next[name] || "",
          (target) => {
            if (!isObject(step.next)) step.next = {};
            step.next[name] = target;
            changed();
          }, { "data-role": "outlet", "data-outlet": name, "aria-label": `${label}: go to` });
        return h("div", { class: `nudge-wf-outlet${known ? "" : " nudge-wf-stale"}`, "data-path": `next.${name}` },
          h("span", { class: "nudge-wf-outlet-name", text: known ? label : `${name} (no such outlet)` }),
          h("span", { class: "nudge-wf-arrow", text: "→" }), choose,
          known ? null : button("remove-outlet", "×", () => {
            delete step.next[name];
            if (!Object.keys(step.next).length) delete step.next;
            update();
          }, { class: "nudge-wf-icon nudge-wf-remove", "aria-label": `Remove the outlet ${name}` }));
      });
      box.replaceChildren(...(rows.length ? rows : [h("span", { class: "nudge-wf-help", text: "The run ends here." })]));
    }

    // -- one form per step type --

    function templateOptions() {
      return [["", "— choose a template —"], ...vocab.templates.map((t) => [t, t])];
    }

    function listOptions() {
      return [["", "—"], ...vocab.static_lists.map((s) => [String(s.id), s.name])];
    }

    /* A send's topic (only its subscribers get it; its one-click leaves it) or the
       transactional mark (sent without marketing consent): one or the other. */
    function sendKindFields(f, config) {
      const transactional = config.transactional === true;
      const mark = h("label", { class: "nudge-wf-check" },
        h("input", { type: "checkbox", "data-key": `${f.key}|transactional`, "data-role": "transactional",
          checked: transactional,
          on: { change: (e) => {
            if (e.target.checked) { config.transactional = true; delete config.topic; }
            else delete config.transactional;
            f.commit();
            update(e.target.dataset.key);
          } } }),
        " Transactional: sent without marketing consent (receipts, account email; never to a bounced address)");
      if (transactional) return [mark];
      const topics = [["", "— no topic —"], ...(vocab.topics || []).map((t) => [t.slug, t.name])];
      return [f.select("topic", "Topic", topics,
        { help: "Only the topic's subscribers get it; its unsubscribe link leaves the topic." }), mark];
    }

    const STEP_FORMS = {
      send_email: (f, config) => {
        const ab = Array.isArray(config.variants);
        const toggle = h("label", { class: "nudge-wf-check" },
          h("input", { type: "checkbox", "data-key": `${f.key}|ab`, "data-role": "ab", checked: ab,
            on: { change: (e) => {
              if (e.target.checked) {
                config.variants = [{ template: config.template || "", weight: 50 }, { template: "", weight: 50 }];
                delete config.template;
              } else {
                const first = (config.variants || []).find((v) => isObject(v) && v.template);
                if (first) config.template = first.template;
                delete config.variants;
              }
              f.commit();
              update(e.target.dataset.key);
            } } }),
          " A/B test several templates");
        const kind = sendKindFields(f, config);
        if (!ab) return [f.select("template", "Template", templateOptions()), toggle, ...kind];
        return [variantsTable(f, config, null, "variants", [
          ["template", "Template", (v, onChange) => selectEl("", templateOptions(), v.template, onChange)],
          ["weight", "Weight", null],
        ], () => ({ template: "", weight: 50 })), toggle, ...kind];
      },
      wait: (f) => [f.duration("duration", "Wait for")],
      wait_until_time: (f, config) => [f.time("time", "Until", { help: "In the contact's time zone." }),
        weekdaysField(f, config)],
      wait_until_date: (f) => [
        f.text("attribute", "Date attribute", { list: datalistOf("attributes"), placeholder: "e.g. renewal_date" }),
        f.number("offset_days", "Offset (days)", { help: "Negative: before the date." }),
        f.time("time", "At", { help: "In the contact's time zone (default 09:00)." }),
      ],
      wait_for_event: (f, config) => [
        f.text("event", "Event", { list: datalistOf("events"), placeholder: "e.g. order_completed" }),
        f.text("match_key", "Matching", { list: propertiesList(config.event || triggerEvent()),
          placeholder: "e.g. cart_id", help: "Only an event with the trigger event's value of this property counts (optional)." }),
        f.duration("timeout", "Timeout"),
        f.json("where", "Event filters", { help: "Filters on its properties, as JSON; empty: any." }),
      ],
      branch: (f) => [f.condition("condition", "Condition", { help: "Yes if the contact matches." })],
      split: (f, config, step) => [
        variantsTable(f, config, step, "variants", [["name", "Name", null, true], ["weight", "Weight", null]],
          () => ({ name: freshVariantName(config), weight: 50 })),
        f.number("holdout", "Holdout (%)", { min: "0", step: "any", help: "A control group that goes its own way." }),
      ],
      update_contact: (f, config) => [
        setRows(f, config),
        f.names("unset", "Unset", { placeholder: "attribute, another", help: "Attribute names, separated by commas." }),
        f.select("add_to_list", "Add to list", listOptions(), { parse: (v) => (v ? Number(v) : null) }),
        f.select("remove_from_list", "Remove from list", listOptions(), { parse: (v) => (v ? Number(v) : null) }),
        f.number("add_score", "Add to score", { help: "Negative: subtract." }),
      ],
      webhook: (f) => [
        f.text("url", "URL", { type: "url", wide: true, placeholder: "https://example.com/hooks/nudge",
          help: "POSTed as signed JSON, retried on failure." }),
        f.json("payload", "Extra payload", { help: "Sent as “extra”, as JSON (optional)." }),
      ],
      notify: (f) => [
        f.text("to", "To", { placeholder: "team@example.com or a staff username",
          help: "An address, or a staff user's username (their email). Never the contact's data." }),
        f.text("subject", "Subject", { raw: true, wide: true }),
        f.textarea("body", "Body", { help: "Liquid: {{ contact.email }}, {{ event.properties.… }}" }),
      ],
      goal: () => [h("p", { class: "nudge-wf-help", text: "The run ends here, converted." })],
      exit: (f) => [f.text("reason", "Reason", { raw: true, placeholder: "shown in the trace" })],
    };

    function freshVariantName(config) {
      const taken = new Set((config.variants || []).map((v) => isObject(v) && v.name));
      for (let code = 65; code < 91; code++) {
        if (!taken.has(String.fromCharCode(code))) return String.fromCharCode(code);
      }
      return `V${taken.size + 1}`;
    }

    function weekdaysField(f, config) {
      const picked = Array.isArray(config.weekdays) ? config.weekdays : [];
      const box = h("span", { class: "nudge-wf-choices", role: "group", "aria-label": "On weekdays" });
      box.append(...WEEKDAYS.map((day, i) => h("label", {},
        h("input", { type: "checkbox", value: i, checked: picked.includes(i), "data-key": `${f.key}|weekday-${i}`,
          on: { change: () => {
            const now = [...box.querySelectorAll("input:checked")].map((input) => Number(input.value));
            if (now.length) config.weekdays = now; else delete config.weekdays;
            f.commit();
            changed();
          } } }), ` ${day}`)));
      return h("div", { class: "nudge-wf-field", "data-path": "config.weekdays" },
        h("span", { class: "nudge-wf-label", text: "On" }), box,
        h("span", { class: "nudge-wf-help", text: "None ticked: any day." }));
    }

    /* config[prop] as a table: one row per variant, a column per field. */
    function variantsTable(f, config, step, prop, columns, fresh) {
      const items = Array.isArray(config[prop]) ? config[prop] : [];
      const rows = items.map((item, i) => {
        if (!isObject(item)) return h("tr", {}, h("td", { colspan: columns.length + 1, text: JSON.stringify(item) }));
        const cells = columns.map(([name, label, custom, isOutlet]) => {
          const dataKey = `${f.key}|${prop}-${i}-${name}`;
          const aria = `${label} of variant ${i + 1}`;
          let control;
          if (custom) {
            control = custom(item, (value) => { item[name] = value; f.commit(); changed(); });
            control.dataset.key = dataKey;
            control.setAttribute("aria-label", aria);
          } else if (name === "weight") {
            control = h("input", { type: "number", min: "0", step: "any", value: show(item.weight), "data-key": dataKey,
              "aria-label": aria, class: "nudge-wf-short", on: { input: (e) => {
                if (e.target.value === "") delete item.weight; else item.weight = Number(e.target.value);
                f.commit();
                changed();
              } } });
          } else {
            control = h("input", { type: "text", value: show(item[name]), "data-key": dataKey, "aria-label": aria,
              class: "nudge-wf-short", on: { input: (e) => {
                const before = item[name];
                item[name] = e.target.value.trim();
                if (isOutlet && step) renameOutlet(step, item, before, item[name]);
                f.commit();
                changed();
              } } });
          }
          return h("td", {}, control);
        });
        const remove = button("remove-variant", "×", () => {
          items.splice(i, 1);
          if (columns.some((c) => c[3]) && step && isObject(step.next)) delete step.next[item.name];
          f.commit();
          update();
        }, { class: "nudge-wf-icon nudge-wf-remove", "aria-label": `Remove variant ${i + 1}` });
        return h("tr", { "data-path": `config.${prop}[${i}]` }, cells, h("td", {}, remove));
      });
      const add = button("add-variant", "Add variant", () => {
        if (!Array.isArray(config[prop])) config[prop] = [];
        const item = fresh();
        config[prop].push(item);
        if (columns.some((c) => c[3]) && step) {
          if (!isObject(step.next)) step.next = {};
          step.next[item.name] = "";
        }
        f.commit();
        update(`${f.key}|${prop}-${config[prop].length - 1}-${columns[0][0]}`);
      }, { class: "button" });
      return h("div", { class: "nudge-wf-field", "data-path": `config.${prop}` },
        h("span", { class: "nudge-wf-label", text: "Variants" }),
        h("table", { class: "nudge-wf-variants" },
          h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", { text: label })), h("th", {}))),
          h("tbody", {}, rows)),
        add);
    }

    const stashedOutlets = new WeakMap(); // variant -> where its outlet led while it had no name

    function renameOutlet(step, variant, before, after) {
      if (!isObject(step.next)) step.next = {};
      let target = stashedOutlets.get(variant);
      if (before && has(step.next, before)) {
        target = step.next[before];
        delete step.next[before];
      }
      if (after) {
        step.next[after] = target || "";
        stashedOutlets.delete(variant);
      } else if (target !== undefined) {
        stashedOutlets.set(variant, target);
      }
    }

    /* update_contact's "set": attribute = value rows. */
    function setRows(f, config) {
      if (has(config, "set") && !isObject(config.set)) return f.json("set", "Set attributes");
      const rows = Object.entries(config.set || {}).map(([name, value]) => ({ name, value }));
      const body = h("tbody", {});
      const write = () => {
        const named = rows.filter((r) => r.name);
        if (named.length) config.set = Object.fromEntries(named.map((r) => [r.name, r.value]));
        else delete config.set;
        f.commit();
        changed();
      };
      const addRow = (rowData, focus) => {
        const n = body.children.length;
        const name = h("input", { type: "text", value: rowData.name, "aria-label": `Attribute ${n + 1}`,
          "data-key": `${f.key}|set-${n}-name`, list: datalistOf("attributes"), class: "nudge-wf-short",
          on: { input: (e) => { rowData.name = e.target.value.trim(); write(); } } });
        const value = h("input", { type: "text", value: rowData.name ? showLoose(rowData.value) : "",
          "aria-label": `Value ${n + 1}`, "data-key": `${f.key}|set-${n}-value`,
          title: "3, true and null are typed; \"3\" (quoted) is text",
          on: { input: (e) => { rowData.value = looseValue(e.target.value); write(); } } });
        const tr = h("tr", {}, h("td", {}, name), h("td", {}, value), h("td", {},
          button("remove-set", "×", () => {
            rows.splice(rows.indexOf(rowData), 1);
            tr.remove();
            write();
          }, { class: "nudge-wf-icon nudge-wf-remove", "aria-label": `Remove attribute ${n + 1}` })));
        body.append(tr);
        if (focus) name.focus();
      };
      rows.forEach((r) => addRow(r));
      const add = button("add-set", "Set an attribute", () => {
        const fresh = { name: "", value: "" };
        rows.push(fresh);
        addRow(fresh, true);
      }, { class: "button" });
      return h("div", { class: "nudge-wf-field", "data-path": "config.set" },
        h("span", { class: "nudge-wf-label", text: "Set" }),
        h("table", { class: "nudge-wf-variants" },
          h("thead", {}, h("tr", {}, h("th", { text: "Attribute" }), h("th", { text: "Value" }), h("th", {}))), body),
        add);
    }

    // -- checking with the server --

    let checkTimer = null;
    let checkSeq = 0;
    let inFlight = null;

    function scheduleCheck() {
      clearTimeout(checkTimer);
      checkTimer = setTimeout(check, VALIDATE_DELAY_MS);
    }

    async function check() {
      const mine = ++checkSeq;
      if (inFlight) inFlight.abort();
      inFlight = new AbortController();
      root.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(root.dataset.validateUrl, {
          method: "POST", body: JSON.stringify(output()), credentials: "same-origin", signal: inFlight.signal,
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        });
        if (!response.ok && response.status !== 400) throw new Error(`HTTP ${response.status}`);
        const data = await response.json();
        if (mine !== checkSeq) return;
        checked = data;
        if (!broken) setNote("");
        refreshOutlets(byServer); // another app's step type may have new outlets
        showChecked();
        root.dataset.checked = String(mine);
        root.dispatchEvent(new CustomEvent("nudge-workflow-checked", { detail: data }));
      } catch (error) {
        if (error.name !== "AbortError" && mine === checkSeq) setNote(`Could not check the workflow: ${error.message}`);
      } finally {
        if (mine === checkSeq) root.removeAttribute("aria-busy");
      }
    }

    function setNote(text) {
      noteText = text;
      const note = mount.querySelector("[data-role=note]");
      if (note) note.textContent = text;
    }

    /* Errors by step index ("steps[1] (remind).config.template: ...") and the rest. */
    function sortErrors(errors) {
      const general = [];
      const byStep = new Map();
      for (const error of errors) {
        const match = STEP_ERROR.exec(error);
        const index = match ? Number(match[1]) : -1;
        if (index >= 0 && index < steps().length) {
          if (!byStep.has(index)) byStep.set(index, []);
          byStep.get(index).push(error.slice(match[0].length));
        } else {
          general.push(error);
        }
      }
      return { general, byStep };
    }

    const pathOf = (message) => message.split(": ")[0];

    /* Outline the field an error names: the longest data-path that starts its path. */
    function markFields(scope, messages, nested) {
      for (const message of messages) {
        const path = pathOf(message);
        let best = null;
        scope.querySelectorAll("[data-path]").forEach((el) => {
          if (!nested && el.closest("[data-role=step]")) return;
          if (el.closest(".nudge-condition-builder")) return; // it marks its own rows
          const candidate = el.dataset.path;
          const fits = path === candidate || path.startsWith(`${candidate}.`) || path.startsWith(`${candidate}[`);
          if (fits && (!best || candidate.length > best.dataset.path.length)) best = el;
        });
        if (best) {
          best.classList.add("nudge-wf-invalid");
          best.title = best.title ? `${best.title}\n${message}` : message;
        }
      }
    }

    function friendly(message) {
      return message.replace(/^config\./, "").replace(/^next\.([^:]+):/, "outlet $1:");
    }

    function showChecked() {
      const { general, byStep } = sortErrors(checked.errors || []);
      mount.querySelectorAll(".nudge-wf-invalid").forEach((el) => {
        el.classList.remove("nudge-wf-invalid");
        el.removeAttribute("title");
      });
      const generalBox = mount.querySelector("[data-role=general-errors]");
      if (generalBox) generalBox.replaceChildren(...general.map((e) => h("li", { text: e })));
      markFields(mount, general, false);
      mount.querySelectorAll(".nudge-wf-step[data-role=step]").forEach((card) => {
        const index = Number(card.dataset.index);
        const mine = byStep.get(index) || [];
        card.classList.toggle("nudge-wf-step-invalid", mine.length > 0);
        card.querySelector("[data-role=step-errors]").replaceChildren(...mine.map((e) => h("li", { text: friendly(e) })));
        markFields(card, mine, true);
        const seen = (checked.steps || [])[index];
        const describe = card.querySelector("[data-role=describe]");
        const step = steps()[index];
        if (describe) describe.textContent = seen && isObject(step) && seen.key === step.key ? seen.describe || "" : "";
      });
    }

    // -- start --

    function datalists() {
      const option = (value, label) => h("option", { value, label });
      const attributes = [...(vocab.builtins || []).map((b) => b.name), ...(vocab.attributes || [])];
      root.append(
        h("datalist", { id: datalistOf("events") }, (vocab.events || []).map((e) => option(e.name))),
        h("datalist", { id: datalistOf("attributes") }, attributes.map((a) => option(a))),
        ...(vocab.events || []).map((e, i) => h("datalist", { id: datalistOf(`properties-${i}`) },
          (e.properties || []).map((p) => option(p)))));
    }

    /* Errors Django rendered for the definition after a refused save, until checked again. */
    function serverErrors() {
      const list = document.getElementById(`${textarea.id}_error`) || row.querySelector(".errorlist");
      const items = list ? list.querySelectorAll("li") : [];
      return [...items].map((li) => li.textContent.trim()).filter(Boolean);
    }

    function fromTextarea() {
      try {
        load(textarea.value);
        broken = false;
      } catch (error) {
        broken = true;
        jsonShown = true;
        row.classList.remove("nudge-wf-hidden");
        noteText = `The JSON is not valid (${error.message}); fix it in the text box.`;
        render();
        return false;
      }
      noteText = "";
      render();
      scheduleCheck();
      return true;
    }

    function start() {
      stepTypes = Object.fromEntries(vocab.step_types.map((t) => [t.name, t]));
      datalists();
      root.querySelectorAll(".nudge-wf-loading").forEach((el) => el.remove());
      root.append(mount);
      checked = { errors: serverErrors(), steps: [] };
      row.classList.add("nudge-wf-hidden");
      let timer = null;
      textarea.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(fromTextarea, TEXTAREA_DELAY_MS);
      });
      fromTextarea();
      root.dataset.state = "ready";
    }

    root.dataset.state = "loading";
    fetch(root.dataset.vocabularyUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((data) => {
        vocab = data;
        start();
      })
      .catch((error) => {
        root.dataset.state = "failed";
        root.querySelectorAll(".nudge-wf-loading").forEach((el) => {
          el.textContent = `The editor could not load (${error.message}); edit the definition as JSON above.`;
        });
      });
  }

  function boot() {
    document.querySelectorAll("#nudge-workflow-editor").forEach(init);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
