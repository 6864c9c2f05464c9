/** The library line under the title (image count, model), refreshed after each upload. */
import { describe, request, type Schemas } from "./api.ts";
import { $ } from "./dom.ts";

export interface LibraryStats {
  refresh(): Promise<void>;
  /** True only when the server said the library has no image (unknown is not empty). */
  isEmpty(): boolean;
  /** The number of images the server last reported, if it answered. */
  count(): number | undefined;
}

export function startStats(): LibraryStats {
  const line = $("stats");
  let items: number | undefined;
  return {
    async refresh() {
      try {
        const s = await request<Schemas["Stats"]>("/stats");
        items = s.items;
        line.textContent = `${s.items.toLocaleString()} image${s.items === 1 ? "" : "s"} · model ${s.model_id}`;
      } catch (error) {
        line.textContent = `Library status unavailable: ${describe(error)}`;
      }
    },
    isEmpty: () => items === 0,
    count: () => items,
  };
}
