// Pullback UI: small inline SVG charts. Colours come from classes in app.css (the page's
// style policy allows no inline styles); each bar carries a <title> for its value.

import { svg, h } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const MARGIN = { top: 12, right: 12, bottom: 28, left: 40 };

/** A rounded-up axis maximum with about four ticks. */
function niceMax(value) {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    const max = step * power;
    if (max >= value) return max;
  }
  return value;
}

/**
 * A bar chart of one or more series over days. `days` is [{day, ...}], `series` is
 * [{key, label, class}]; bars of one day stand side by side.
 */
export function barChart(days, series, attrs = {}) {
  const innerW = WIDTH - MARGIN.left - MARGIN.right;
  const innerH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const max = niceMax(Math.max(0, ...days.flatMap((d) => series.map((s) => Number(d[s.key]) || 0))));
  const slot = innerW / Math.max(days.length, 1);
  const barW = Math.max(1, (slot * 0.8) / series.length);
  const y = (v) => MARGIN.top + innerH - (v / max) * innerH;

  const grid = [];
  for (let i = 0; i <= 4; i++) {
    const value = (max / 4) * i;
    const yy = y(value);
    grid.push(
      svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: yy, y2: yy, class: "chart-grid" }),
      svg("text", { x: MARGIN.left - 6, y: yy + 4, class: "chart-label chart-label-y" }, formatCount(value)),
    );
  }

  const bars = [];
  days.forEach((d, i) => {
    series.forEach((s, j) => {
      const value = Number(d[s.key]) || 0;
      const x = MARGIN.left + i * slot + slot * 0.1 + j * barW;
      bars.push(
        svg(
          "rect",
          { x, y: y(value), width: barW, height: Math.max(0, MARGIN.top + innerH - y(value)), class: `chart-bar ${s.class}` },
          svg("title", {}, `${d.day}: ${value} ${s.label.toLowerCase()}`),
        ),
      );
    });
  });

  // A date under the first bar, the last, and a few between.
  const labels = [];
  const every = Math.max(1, Math.ceil(days.length / 6));
  days.forEach((d, i) => {
    if (i % every !== 0 && i !== days.length - 1) return;
    const x = MARGIN.left + i * slot + slot / 2;
    labels.push(svg("text", { x, y: HEIGHT - 8, class: "chart-label chart-label-x" }, String(d.day).slice(5)));
  });

  const chart = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": attrs.label ?? "chart", ...attrs.svg },
    grid,
    svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(0), y2: y(0), class: "chart-axis" }),
    bars,
    labels,
  );
  const legend = h(
    "ul",
    { class: "legend" },
    series.map((s) => h("li", {}, h("span", { class: `swatch ${s.class}` }), s.label)),
  );
  return h("figure", { class: "chart-figure", ...attrs.figure }, chart, legend);
}

function formatCount(value) {
  if (value >= 1000) return `${Math.round(value / 100) / 10}k`;
  return String(Math.round(value * 10) / 10);
}
