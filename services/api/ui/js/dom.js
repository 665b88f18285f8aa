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
// only ever reads text nodes here, and MathML output needs no inline styles (strict CSP). Models
// and datasets also write math bare (`\boxed{\frac{1}{2}}` with no delimiter): what is left after
// the delimited pass is scanned for LaTeX commands, and each run of math they start is rendered
// on its own (text that KaTeX cannot parse stays as it was). A single $ is read as Pandoc reads
// it, so prices are not math: "$5 and $12" has a space before its second $.
export function renderMath(el) {
  if (typeof window.renderMathInElement !== "function") return;
  window.renderMathInElement(el, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false },
    ],
    output: "mathml",
    throwOnError: false,
    trust: false,
  });
  renderBareMath(el);
}

// Commands that only occur in math: a backslash before any other word (a Windows path, an
// escaped character in code) is left alone.
const MATH_COMMAND = new RegExp(
  "\\\\(?:boxed|[dt]?frac|sqrt|binom|cdot|cdots|ldots|dots|times|div|pm|mp|leq?|geq?|neq?|" +
  "approx|equiv|sim|infty|pi|theta|alpha|beta|gamma|delta|epsilon|lambda|mu|sigma|phi|omega|" +
  "Delta|Omega|sum|prod|int|lim|log|ln|sin|cos|tan|left|right|text|mathrm|mathbf|operatorname|" +
  "circ|angle|perp|parallel|overline|vec|hat|in|notin|cup|cap|subset|subseteq|to|rightarrow|" +
  "Rightarrow|implies|iff|quad|qquad|mid|nmid|lfloor|rfloor|lceil|rceil)(?![A-Za-z])", "g");
const OPERAND = /[0-9A-Za-z+\-*\/=<>|!']/;

function closing(s, i) {
  // The index of the brace or bracket that closes the one at i, or -1.
  const [open, close] = s[i] === "{" ? ["{", "}"] : ["[", "]"];
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    if (s[j] === "\\") { j++; continue; }
    if (s[j] === open) depth++;
    else if (s[j] === close && --depth === 0) return j;
  }
  return -1;
}

// Where the math that starts with the command at i ends: commands with their {…} and […]
// arguments, ^ and _ with theirs, and operands written against them, up to a space or a
// sentence's punctuation (\left … \right spans spaces).
function mathEnd(s, i) {
  let j = i;
  while (j < s.length) {
    const c = s[j];
    if (c === "\\") {
      const name = /^\\([A-Za-z]+|.)/.exec(s.slice(j));
      if (!name) break;
      if (name[1] === "left") {
        const k = s.indexOf("\\right", j);
        if (k < 0) break;
        j = k + 7;
        continue;
      }
      j += name[0].length;
      if (s[j] === "[" && name[1] === "sqrt") {
        const k = closing(s, j);
        if (k < 0) break;
        j = k + 1;
      }
    } else if (c === "{") {
      const k = closing(s, j);
      if (k < 0) break;
      j = k + 1;
    } else if ((c === "^" || c === "_") && j + 1 < s.length) {
      j += 1;
      if (s[j] === "{") {
        const k = closing(s, j);
        if (k < 0) break;
        j = k + 1;
      } else j += s[j] === "\\" ? 0 : 1;
    } else if (OPERAND.test(c)) j++;
    else break;
  }
  return j;
}

// $…$ with no space just inside either $ and no digit right after the closing one (Pandoc's
// rule): "$x^2$" is math, "costs $5 and $12" is not.
const DOLLARS = /\$(?=\S)([^$]*?\S)\$(?!\d)/g;

// [start, end, tex] of each run of math in a text: $…$ first, then bare commands between them.
function mathRuns(text) {
  const runs = [];
  let at = 0;
  const bare = (from, to) => {
    const part = text.slice(0, to);
    MATH_COMMAND.lastIndex = from;
    let m;
    while ((m = MATH_COMMAND.exec(part))) {
      const start = m.index;
      const end = Math.min(mathEnd(part, start), to);
      if (end > start) runs.push([start, end, text.slice(start, end)]);
      MATH_COMMAND.lastIndex = Math.max(end, start + 1);
    }
  };
  DOLLARS.lastIndex = 0;
  let d;
  while ((d = DOLLARS.exec(text))) {
    if (d.index > 0 && text[d.index - 1] === "\\") continue; // \$ is a dollar sign
    bare(at, d.index);
    runs.push([d.index, d.index + d[0].length, d[1]]);
    at = d.index + d[0].length;
  }
  bare(at, text.length);
  return runs;
}

function renderBareMath(el) {
  if (!window.katex) return;
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.parentElement && n.parentElement.closest("math, script, style")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const nodes = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n);
  for (const node of nodes) {
    const text = node.data;
    const runs = mathRuns(text);
    if (!runs.length) continue;
    const parts = [];
    let at = 0;
    for (const [start, end, tex] of runs) {
      const span = document.createElement("span");
      try {
        window.katex.render(tex, span,
          { output: "mathml", throwOnError: true, trust: false });
      } catch {
        continue; // not parsable: the text stays as it is
      }
      parts.push(document.createTextNode(text.slice(at, start)), span);
      at = end;
    }
    if (!parts.length) continue;
    parts.push(document.createTextNode(text.slice(at)));
    node.replaceWith(...parts);
  }
}
