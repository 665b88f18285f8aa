// A line chart as SVG built node by node (no library, no inline styles: colours are classes).

const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

// series: [{name, points: [[x, y], …]}]
export function lineChart(series, { title = "", width = 520, height = 260 } = {}) {
  const pad = { l: 56, r: 14, t: 26, b: 30 };
  const svg = el("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": title, "data-chart": title });
  svg.append(el("text", { x: pad.l, y: 16 }, title));
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    svg.append(el("text", { x: width / 2 - 30, y: height / 2 }, "no data yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const w = width - pad.l - pad.r;
  const hgt = height - pad.t - pad.b;
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * w;
  const sy = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * hgt;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.append(el("line", { class: "grid", x1: pad.l, x2: pad.l + w, y1: sy(y), y2: sy(y) }));
    svg.append(el("text", { x: 4, y: sy(y) + 4 }, fmt(y)));
  }
  const integers = pts.every((p) => Number.isInteger(p[0]));
  const ticks = integers && x1 - x0 < 4 ? x1 - x0 : 4;
  for (let i = 0; i <= ticks; i++) {
    const raw = x0 + ((x1 - x0) * i) / ticks;
    const x = integers ? Math.round(raw) : raw;
    svg.append(el("text", { x: sx(x) - 8, y: height - 10 }, fmt(Math.round(x * 100) / 100)));
  }
  svg.append(el("line", { class: "axis", x1: pad.l, x2: pad.l, y1: pad.t, y2: pad.t + hgt }));
  svg.append(el("line", { class: "axis", x1: pad.l, x2: pad.l + w, y1: pad.t + hgt, y2: pad.t + hgt }));
  series.forEach((s, i) => {
    const cls = `s${i % 4}`;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    svg.append(el("path", { class: `line ${cls}`, d: d.join(" "), "data-series": s.name }));
    if (s.points.length < 40) {
      for (const p of s.points) svg.append(el("circle", { class: cls, cx: sx(p[0]), cy: sy(p[1]), r: 2.5 }));
    }
    if (s.name !== title) {
      svg.append(el("text", { class: `${cls} legend`, x: pad.l + w - 120, y: pad.t + 14 * (i + 1) }, s.name));
    }
  });
  return svg;
}

// Grouped bars with interval whiskers: groups [{name, bars: [{name, value, low, high}]}], values
// in 0–1 drawn as percentages. For an experiment's accuracy per eval set and mode.
export function barChart(groups, { title = "", height = 260 } = {}) {
  const pad = { l: 44, r: 14, t: 26, b: 48 };
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const bar = 26;
  const groupW = names.length * bar + 30;
  const width = Math.max(360, pad.l + pad.r + groups.length * groupW);
  const svg = el("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": title, "data-chart": title });
  svg.append(el("text", { x: pad.l, y: 16 }, title));
  const hgt = height - pad.t - pad.b;
  const sy = (v) => pad.t + (1 - v) * hgt;
  for (let i = 0; i <= 4; i++) {
    const v = i / 4;
    svg.append(el("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: sy(v), y2: sy(v) }));
    svg.append(el("text", { x: 4, y: sy(v) + 4 }, `${Math.round(v * 100)}%`));
  }
  svg.append(el("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: sy(0), y2: sy(0) }));
  groups.forEach((g, gi) => {
    const x0 = pad.l + 10 + gi * groupW;
    for (const b of g.bars) {
      const i = names.indexOf(b.name);
      const cls = `s${i % 4}`;
      const x = x0 + i * bar;
      const rect = el("rect", { class: `bar ${cls}`, x, y: sy(b.value), width: bar - 6,
        height: Math.max(0, sy(0) - sy(b.value)), "data-mode": b.name, "data-set": g.name });
      rect.append(el("title", {}, `${b.name}: ${(100 * b.value).toFixed(1)}%`));
      svg.append(rect);
      const cx = x + (bar - 6) / 2;
      svg.append(el("line", { class: "whisker", x1: cx, x2: cx, y1: sy(b.low), y2: sy(b.high) }));
    }
    svg.append(el("text", { x: x0, y: height - 30 }, g.name));
  });
  names.forEach((n, i) => {
    svg.append(el("text", { class: `s${i % 4} legend`, x: pad.l + i * 110, y: height - 10 }, n));
  });
  return svg;
}
