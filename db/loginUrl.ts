/** The login role each kind of pool connects as (created by migration 0007). */
export const LOGIN_ROLES = {
  app: 'awooop_runtime',
  sweeper: 'awooop_sweeper_login',
  platform: 'awooop_platform_login',
} as const;

/** Which process's login: `app` for web and workers, `sweeper`, `platform` for the CLI. */
export type Login = keyof typeof LOGIN_ROLES;

/**
 * The owner's URL with the user swapped for `login`'s role and no password: the same server
 * and database, for clusters that let the login roles in without one (trust, peer, a
 * client certificate). With password authentication each process is given its own URL
 * instead (`AWOOOP_DB_RUNTIME_URL`, ...), so the owner's password never reaches a runtime.
 */
export function loginUrl(ownerUrl: string, login: Login): string {
  const url = new URL(ownerUrl);
  url.username = LOGIN_ROLES[login];
  url.password = '';
  return url.toString();
}
