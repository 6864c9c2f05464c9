/**
 * What the page needs to know about the server: its limits, so batches fit them. The server
 * writes it into the page (web.ts) and the page reads it (web/config.ts); this file imports
 * nothing, so both the Node and the browser builds can share the one type.
 */
export interface PageConfig {
  maxBatchItems: number;
  maxImageBytes: number;
  maxRequestBytes: number;
  maxQueryChars: number;
  maxK: number;
  /** Whether jobs can index folders on the server (a media root is set). */
  jobs: boolean;
}
