// The part of autocannon 9's API the ingress bench uses (the package ships no types).
declare module 'autocannon' {
  /** One request in autocannon's request sequence. */
  export type AutocannonRequest = {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
    /** Rewrites the request before it is sent; returning it keeps the sequence going. */
    setupRequest?: (
      request: AutocannonRequest,
      context: Record<string, unknown>,
    ) => AutocannonRequest;
  };

  export type AutocannonOptions = {
    url: string;
    connections?: number;
    duration?: number;
    pipelining?: number;
    timeout?: number;
    requests?: AutocannonRequest[];
  };

  /** Percentiles of a histogram, as autocannon names them (`p50`, `p99`, ...). */
  export type Histogram = {
    average: number;
    mean: number;
    min: number;
    max: number;
    p50: number;
    p90: number;
    p99: number;
    total: number;
  };

  export type AutocannonResult = {
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    '2xx': number;
    latency: Histogram;
    requests: Histogram & { sent: number };
  };

  /** Runs a load test; resolves with its result. */
  export default function autocannon(options: AutocannonOptions): Promise<AutocannonResult>;
}
