/**
 * A small line chart (recall against token budget) drawn as SVG and rasterised to PNG by sharp,
 * so the effective-length study needs no charting library.
 */
import { writeFile } from "node:fs/promises";
import sharp from "sharp";

export interface Series {
  label: string;
  /** [x, y] points; y is a fraction in [0, 1]. */
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** x positions that get a tick and a grid line; default: every point's x. */
  xTicks?: readonly number[];
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The chart as an SVG document: x (positive) on a log axis, y from 0 to a round step above the data. */
export function lineChartSvg(series: readonly Series[], options: ChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 440;
  const margin = { left: 70, right: 170, top: 50, bottom: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  // Budgets run from 5 to 248: a log axis keeps the short end readable.
  const xMin = Math.log(Math.max(1e-9, Math.min(...xs)) / 1.15);
  const xMax = Math.log(Math.max(...xs, 1) * 1.1);
  const top = Math.max(0, ...ys);
  const yStep = [0.01, 0.02, 0.05, 0.1, 0.2].find((step) => top / step <= 8) ?? 0.2;
  const ySteps = Math.max(1, Math.ceil(top / yStep - 1e-9));
  const yMax = Math.min(1, ySteps * yStep);
  const px = (x: number) => margin.left + ((Math.log(x) - xMin) / (xMax - xMin)) * plotW;
  const py = (y: number) => margin.top + plotH - (y / yMax) * plotH;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="28" font-size="17" text-anchor="middle">${escapeXml(options.title)}</text>`,
  );
  const xTicks = options.xTicks ?? [...new Set(xs)].sort((a, b) => a - b);
  for (const x of xTicks) {
    const X = px(x).toFixed(1);
    parts.push(
      `<line x1="${X}" y1="${margin.top}" x2="${X}" y2="${margin.top + plotH}" stroke="#e6e6e6"/>`,
      `<text x="${X}" y="${margin.top + plotH + 18}" font-size="11" text-anchor="middle">${x}</text>`,
    );
  }
  const decimals = yStep < 0.1 ? 2 : 1;
  for (let k = 0; k * yStep <= yMax + 1e-9; k++) {
    const y = k * yStep;
    const Y = py(y).toFixed(1);
    parts.push(
      `<line x1="${margin.left}" y1="${Y}" x2="${margin.left + plotW}" y2="${Y}" stroke="#e6e6e6"/>`,
      `<text x="${margin.left - 8}" y="${Y}" font-size="11" text-anchor="end" dominant-baseline="middle">${y.toFixed(decimals)}</text>`,
    );
  }
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 16}" font-size="13" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text transform="translate(20 ${margin.top + plotH / 2}) rotate(-90)" font-size="13" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  );
  series.forEach((s, index) => {
    const colour = PALETTE[index % PALETTE.length] as string;
    const path = s.points.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    parts.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2.5"/>`);
    for (const p of s.points) {
      parts.push(
        `<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3.5" fill="${colour}"/>`,
      );
    }
    const ly = margin.top + 14 + index * 22;
    const lx = margin.left + plotW + 16;
    parts.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${colour}" stroke-width="2.5"/>`,
      `<text x="${lx + 30}" y="${ly}" font-size="12" dominant-baseline="middle">${escapeXml(s.label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Writes the chart as a PNG file (and returns the SVG it was drawn from). */
export async function writeLineChartPng(
  file: string,
  series: readonly Series[],
  options: ChartOptions,
): Promise<string> {
  const svg = lineChartSvg(series, options);
  await writeFile(file, await sharp(Buffer.from(svg)).png().toBuffer());
  return svg;
}
