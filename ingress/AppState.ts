import type { ApiState } from './apiAuth.ts';

/**
 * What ingress middleware may leave on `ctx.state`: the state type of the app and of every
 * router. A field is optional here because only the middleware that sets it makes it true;
 * a route behind that middleware names the narrower state (`router.get<ApiState>(...)`).
 */
export type AppState = Partial<ApiState>;
