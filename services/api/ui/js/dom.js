// DOM helpers. Every piece of data enters the page as a text node (never as HTML), so a
// triplet holding "<script>" stays text whatever it contains.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function mount(root, ...children) {
  root.replaceChildren();
  append(root, children);
}

export function table(columns, rows, onClick) {
  const head = h("tr", {}, columns.map(([title]) => h("th", {}, title)));
  const body = rows.map((row) =>
    h(
      "tr",
      onClick ? { class: "clickable", onclick: () => onClick(row) } : {},
      columns.map(([, cell]) => h("td", {}, cell(row))),
    ),
  );
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

export function card(label, value, attrs = {}) {
  return h("div", { class: "card", ...attrs }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value));
}

export function pct(rate) {
  return rate === null || rate === undefined ? "–" : `${(100 * rate).toFixed(1)}%`;
}

export function mark(value) {
  if (value === true) return h("span", { class: "ok", title: "verifier: correct" }, "✓ correct");
  if (value === false) return h("span", { class: "bad", title: "verifier: wrong" }, "✗ wrong");
  return h("span", { class: "muted" }, "not judged");
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${s % 60}s` : `${(s / 3600).toFixed(1)}h`;
}

// LaTeX between $…$, $$…$$, \(…\) and \[…\] rendered by the vendored KaTeX as MathML: KaTeX
// only ever reads text nodes here, and MathML output needs no inline styles (strict CSP).
export function renderMath(el) {
  if (typeof window.renderMathInElement !== "function") return;
  window.renderMathInElement(el, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false },
      { left: "$", right: "$", display: false },
    ],
    output: "mathml",
    throwOnError: false,
    trust: false,
  });
}
