/** The library's public surface: `createLibrary` and the types the HTTP layer and CLI use. */

export { libraryModelId } from "./generation.ts";
export { createLibrary, LongclipLibrary } from "./library.ts";
export type * from "./types.ts";
