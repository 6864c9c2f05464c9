/** The library's public surface: `createLibrary` and the types the HTTP layer and CLI use. */

export { createLibrary, LongclipLibrary } from "./library.ts";
export { libraryModelId } from "./models/generation.ts";
export type * from "./types.ts";
