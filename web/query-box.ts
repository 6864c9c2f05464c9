/**
 * The query box: it grows with its text, counts tokens as you type (POST /tokenize, the
 * server's tokenizer) and marks where the model stops reading; Ctrl/Cmd+Enter and the
 * example paragraphs submit the search form.
 */
import { describe, request, type Schemas } from "./api.ts";
import { $, el } from "./dom.ts";

export interface QueryBox {
  text(): string;
  focus(): void;
  /** Asks the server for the model's context length, then counts what the box holds. */
  learnMaxTokens(): Promise<void>;
}

/** Text this far before the cut is shown, so the marker has context. */
const CUT_CONTEXT = 80;
/** Typing pauses this long before the box is counted, so each key is not a request. */
const COUNT_DELAY_MS = 250;

export function startQueryBox(): QueryBox {
  const query = $<HTMLTextAreaElement>("query");
  const tokenCount = $("token-count");
  const cutNote = $("cut-note");
  const searchForm = $<HTMLFormElement>("search-form");
  const growsByItself = typeof CSS !== "undefined" && CSS.supports("field-sizing", "content");
  /** The model's context length; the server's /tokenize says it (CLIP models have 77). */
  let maxTokens = 248;
  let tokenTimer: ReturnType<typeof setTimeout> | undefined;
  let tokenAbort: AbortController | undefined;

  const grow = () => {
    if (growsByItself) return;
    query.style.height = "auto";
    query.style.height = `${query.scrollHeight + 2}px`;
  };

  const showCut = (text: string, kept: number) => {
    cutNote.replaceChildren();
    if (kept >= text.length) {
      cutNote.hidden = true;
      return;
    }
    const before = text.slice(Math.max(0, kept - CUT_CONTEXT), kept);
    const after = text.slice(kept);
    cutNote.append(
      el("strong", {}, "The model reads up to the ✂ mark; the dimmed text is cut: "),
      el("span", { class: "kept" }, `${kept > CUT_CONTEXT ? "…" : ""}${before}`),
      el("mark", { class: "cut-marker", "aria-label": "cut here", title: "cut here" }, "✂"),
      el("span", { class: "cut", "data-testid": "cut-text" }, after),
    );
    cutNote.hidden = false;
  };

  const countTokens = async () => {
    tokenAbort?.abort();
    const text = query.value;
    if (text.trim() === "") {
      tokenCount.textContent = `0 / ${maxTokens} tokens`;
      tokenCount.classList.remove("over");
      showCut(text, text.length);
      return;
    }
    // A newer keystroke aborts this count, so an old answer never overwrites a newer one.
    const abort = new AbortController();
    tokenAbort = abort;
    try {
      const t = await request<Schemas["TokenizeResponse"]>("/tokenize", {
        method: "POST",
        json: { text },
        signal: abort.signal,
      });
      tokenCount.textContent = `${t.tokens} / ${t.max_tokens} tokens${t.truncated ? " (cut)" : ""}`;
      tokenCount.classList.toggle("over", t.truncated);
      maxTokens = t.max_tokens;
      showCut(text, t.kept_chars);
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      tokenCount.textContent = `token count unavailable: ${describe(error)}`;
      tokenCount.classList.add("over");
    }
  };

  query.addEventListener("input", () => {
    grow();
    clearTimeout(tokenTimer);
    tokenTimer = setTimeout(() => void countTokens(), COUNT_DELAY_MS);
  });
  query.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      searchForm.requestSubmit();
    }
  });
  // Example paragraphs (captions of the demo gallery's scenes): fill the box and search.
  for (const example of document.querySelectorAll<HTMLButtonElement>("button[data-example]")) {
    example.addEventListener("click", () => {
      query.value = example.dataset.example ?? "";
      grow();
      void countTokens();
      searchForm.requestSubmit();
    });
  }
  grow();

  return {
    text: () => query.value,
    focus: () => query.focus(),
    async learnMaxTokens() {
      try {
        const t = await request<Schemas["TokenizeResponse"]>("/tokenize", {
          method: "POST",
          json: { text: "" },
        });
        maxTokens = t.max_tokens;
        if (query.value.trim() === "") tokenCount.textContent = `0 / ${maxTokens} tokens`;
      } catch {
        // The counter reports the error on the first keystroke.
      }
      if (query.value) await countTokens();
    },
  };
}
