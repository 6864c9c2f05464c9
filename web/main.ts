/**
 * The web UI: paragraph search with a live token count, a result grid with a detail view,
 * and drag-and-drop indexing in batches that fit the server's limits. This file only wires
 * the panels together; each lives in its own module.
 */
import { startApiKeyDialog } from "./api-key.ts";
import { readConfig } from "./config.ts";
import { startDetailView } from "./detail.ts";
import { startDuplicatesPanel } from "./duplicates.ts";
import { startJobsPanel } from "./jobs.ts";
import { startQueryBox } from "./query-box.ts";
import { startSearch } from "./search.ts";
import { startStats } from "./stats.ts";
import { startUploadPanel } from "./upload.ts";

const config = readConfig();
const askForKey = startApiKeyDialog();
const queryBox = startQueryBox();
const stats = startStats();
// Cards open the detail view and the detail view starts searches: the view is created
// second, and a card can only be clicked once both exist.
const search = startSearch({ config, queryBox, stats, open: (hit) => void detail.open(hit) });
const detail = startDetailView(search);
startUploadPanel({
  config,
  askForKey,
  uploaded: async (indexed) => {
    await stats.refresh();
    search.noteAdded(indexed);
  },
});

// The page opens on the library: its newest images under the search box, with the count.
void stats.refresh().then(() => search.showLibrary());
startJobsPanel(config.jobs);
startDuplicatesPanel();
void queryBox.learnMaxTokens();
