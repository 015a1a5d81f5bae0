import { AppError } from '../errors.ts';

/** How a call through the gateway failed. */
export class ToolCallError extends AppError {
  /** Whether the request may have reached the server (a repeat could act twice). */
  readonly maybeSent: boolean;
  constructor(code: AppError['code'], message: string, maybeSent: boolean, cause?: unknown) {
    super(code, message, { status: 502, ...(cause ? { cause } : {}) });
    this.maybeSent = maybeSent;
  }
}
