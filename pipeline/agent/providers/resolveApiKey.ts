import { AppError, NonRetryableError } from '../../errors.ts';
import type { ProviderDeps } from '../modelTypes.ts';
import { ProviderError } from '../ProviderError.ts';

/**
 * The value of a target's `apiKey` ref. A key that cannot be read fails this target only (as a
 * {@link ProviderError}), so the route can still fall back to a target that needs no key. A
 * missing secret will not appear by itself; a resolver that is merely unreachable might recover.
 */
export async function resolveApiKey(
  { provider, model, ref }: { provider: string; model: string; ref: string },
  deps: ProviderDeps,
): Promise<string> {
  try {
    return await deps.resolveSecret(ref);
  } catch (error) {
    const known = error instanceof AppError;
    // Resolver messages name the ref, never its value; an unknown error's text is not trusted.
    const reason = known ? error.message : 'the secret store did not answer';
    throw new ProviderError(
      known ? error.code : 'SECRET_UNAVAILABLE',
      `${provider} model ${model}: cannot read API key ${ref}: ${reason}`,
      { provider, model, retryable: !(error instanceof NonRetryableError), cause: error },
    );
  }
}
