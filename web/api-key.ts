/**
 * The API key dialog: the "API key" button opens it, and an upload refused with 401 asks
 * through it; the key lives in sessionStorage (see api.ts).
 */
import { apiKey, setApiKey } from "./api.ts";
import { $ } from "./dom.ts";

/** Shows the dialog with this reason; resolves with the key entered, or null if none. */
export type AskForKey = (reason: string) => Promise<string | null>;

export function startApiKeyDialog(): AskForKey {
  const dialog = $<HTMLDialogElement>("key-dialog");
  const input = $<HTMLInputElement>("key-input");
  const reasonText = $("key-reason");
  const button = $("key-button");
  let answer: ((key: string | null) => void) | undefined;

  const updateButton = () => {
    button.textContent = apiKey() ? "API key ✓" : "API key";
  };

  const ask: AskForKey = (reason) => {
    reasonText.textContent = reason;
    input.value = apiKey() ?? "";
    dialog.showModal();
    input.focus();
    return new Promise((resolve) => {
      answer = resolve;
    });
  };

  // Every way out of the dialog answers the pending question once; closing it answers null.
  const reply = (key: string | null) => {
    const resolve = answer;
    answer = undefined;
    if (dialog.open) dialog.close();
    resolve?.(key);
  };

  $<HTMLFormElement>("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    setApiKey(key || null);
    updateButton();
    reply(key || null);
  });
  $("key-cancel").addEventListener("click", () => reply(null));
  $("key-clear").addEventListener("click", () => {
    setApiKey(null);
    updateButton();
    reply(null);
  });
  dialog.addEventListener("close", () => reply(null));
  button.addEventListener("click", () => {
    void ask(
      "The key is sent with every request from this tab (x-api-key) and forgotten when the tab closes.",
    );
  });
  updateButton();
  return ask;
}
