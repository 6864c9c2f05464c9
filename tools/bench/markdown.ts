/** Markdown tables for bench:perf output. */

export type Cell = string | number | undefined;

/** One section of the output: a "## title" heading, its table(s), and a note under them. */
export interface MarkdownSection {
  title: string;
  body: string;
  note?: string;
}

/** Formats a number with `digits` significant decimals, or "–" when missing. */
export function fmt(value: number | undefined, digits = 2): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(digits);
}

export function markdownTable(headers: readonly string[], rows: readonly Cell[][]): string {
  const cell = (value: Cell) => {
    if (typeof value !== "number") return value ?? "–";
    return Number.isInteger(value) ? value.toLocaleString("en-US") : fmt(value);
  };
  const lines = [
    `| ${headers.join(" | ")} |`,
    `| ${headers.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(cell).join(" | ")} |`),
  ];
  return lines.join("\n");
}
