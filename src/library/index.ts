/** The library's public surface: `createLibrary` and the types the HTTP layer and CLI use. */
export {
  createLibrary,
  type LibraryOptions,
  type LibraryState,
  LongclipLibrary,
  libraryModelId,
} from "./library.ts";
export type * from "./types.ts";
