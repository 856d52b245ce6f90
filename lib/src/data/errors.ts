/**
 * The one error type every dataset loader throws: it names the file (or folder) at fault and
 * says what is wrong with it, so a bad download or a typo in a path is one clear message,
 * never a silently partial dataset.
 */
export class DatasetError extends Error {
  /** The file or folder the error is about, when there is one. */
  readonly file?: string;

  constructor(message: string, file?: string) {
    super(message);
    this.name = "DatasetError";
    this.file = file;
  }
}

/** Message of an unknown thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
