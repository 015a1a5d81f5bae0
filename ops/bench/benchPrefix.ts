/** A fresh key prefix for one bench invocation (letters, digits and `-` only). */
export function benchPrefix(name: string): string {
  return `${name}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}
