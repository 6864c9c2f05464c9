/**
 * Builds the web UI (web/) into dist/web/index.html (see src/server/web-page.ts).
 *
 *   npm run build:web
 */
import path from "node:path";
import { buildWeb } from "../src/server/web-page.ts";

const out = await buildWeb();
process.stdout.write(`built ${path.relative(process.cwd(), out)}\n`);
