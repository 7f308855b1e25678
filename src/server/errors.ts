/** Failures to start a broker that an operator fixes (a taken port, a locked or unwritable data dir). */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
