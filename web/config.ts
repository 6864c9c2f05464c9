/**
 * The server's limits as the page needs them, read from the JSON the server writes into
 * #longclip-config; the defaults stand in for a page served without it (a plain file).
 */
import type { PageConfig } from "../src/server/page-config.ts";

export type { PageConfig };

const DEFAULT_CONFIG: PageConfig = {
  maxBatchItems: 64,
  maxImageBytes: 20 * 1024 * 1024,
  maxRequestBytes: 200 * 1024 * 1024,
  maxQueryChars: 10_000,
  maxK: 1000,
  jobs: false,
};

export function readConfig(): PageConfig {
  const node = document.getElementById("longclip-config");
  if (!node?.textContent) return DEFAULT_CONFIG;
  try {
    return { ...DEFAULT_CONFIG, ...(JSON.parse(node.textContent) as Partial<PageConfig>) };
  } catch {
    return DEFAULT_CONFIG;
  }
}
