import { ANTHROPIC_BASE_URL, type ModelTarget } from '../contracts/policyContract.ts';

/**
 * The endpoint a target calls (provider + base URL without trailing slashes; Anthropic's own
 * when it names none), or null for the offline `echo`.
 */
export function endpointOf(target: {
  provider: ModelTarget['provider'];
  baseUrl?: string | undefined;
}): { provider: string; baseUrl: string } | null {
  if (target.provider === 'echo') return null;
  const baseUrl =
    target.baseUrl ?? (target.provider === 'anthropic' ? ANTHROPIC_BASE_URL : undefined);
  return baseUrl === undefined
    ? null
    : { provider: target.provider, baseUrl: baseUrl.replace(/\/+$/, '') };
}
