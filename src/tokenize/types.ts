/** The tokenizer stage: text → CLIP BPE ids framed by the start and end tokens. */
export interface TokenizedText {
  /** `[start] + bpe ids + [end]`, cut to the context length with the last kept id set to `end`. */
  ids: Int32Array;
  /** Length of `[start] + bpe ids + [end]` before cutting. */
  tokens: number;
  /** True when `tokens` exceeded the context length and `ids` was cut. */
  truncated: boolean;
}

export interface TextTokenizer {
  readonly contextLength: number;
  readonly startId: number;
  readonly endId: number;
  encode(text: string): TokenizedText;
}
