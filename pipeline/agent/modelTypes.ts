// The shapes every model provider speaks, whatever its wire format.
//
// Seam: tool calls (the MCP Gateway and the step loop) arrive with the next piece of work.
// Until then a request carries only messages; a later `tools` field on ModelRequest, a `tool`
// role on ChatMessage and tool calls on ModelResult extend these types without changing the
// fields below.

/** One turn of a conversation as the model sees it. */
export type ChatMessage = { role: 'system' | 'user' | 'assistant'; content: string };

/** One model call: the conversation, the shape of the answer, and the run it belongs to. */
export type ModelRequest = {
  messages: ChatMessage[];
  /** `json` asks the provider for a single JSON object (where the provider supports it). */
  responseFormat: 'text' | 'json';
  /** The caller's cancellation (the job's signal); an abort stops the call at once. */
  signal?: AbortSignal;
  /** The run's W3C trace id, carried into logs. */
  traceId: string;
};

/** A model's answer and what it cost. */
export type ModelResult = {
  text: string;
  /** The target's provider, e.g. `openai_compatible`. */
  provider: string;
  /** The model the target asked for. */
  model: string;
  usage: { inputTokens: number; outputTokens: number };
  latencyMs: number;
};

/** What a provider needs from its surroundings. */
export type ProviderDeps = {
  /** Turns a `secret:NAME` / `env:NAME` ref into its value at the last moment. */
  resolveSecret: (ref: string) => Promise<string>;
  /** The HTTP client; the global `fetch` when absent. */
  fetch?: typeof fetch;
};
