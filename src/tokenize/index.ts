export { cleanText, collapseWhitespace, fixText, htmlUnescape } from "./clean.ts";
export {
  ClipTokenizer,
  type ClipTokenizerOptions,
  END_TOKEN,
  START_TOKEN,
} from "./clip-tokenizer.ts";
export { tokenizerFromConfig, tokenizerFromModelDir } from "./model-dir.ts";
export type { TextTokenizer, TokenizedText } from "./types.ts";
