import { expect } from 'vitest';
import { AppError } from '../../pipeline/errors.ts';

/** The `AppError` `promise` rejects with; the test fails if it resolves or rejects otherwise. */
export async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error('expected the call to fail');
}
