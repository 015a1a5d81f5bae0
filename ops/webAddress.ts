/**
 * Where a client on this machine reaches `web` listening on `host`, for a URL: a wildcard
 * address (`0.0.0.0`, `::`) on loopback, any other as it is, in brackets when it is IPv6.
 */
export function webAddress(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
