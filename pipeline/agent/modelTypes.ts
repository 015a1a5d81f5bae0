// The shapes every model provider speaks, whatever its wire format.

/** A tool the model may call: a name safe for every provider (^[A-Za-z0-9_-]{1,64}$), a description, and its input as JSON Schema. */
export type ToolSpec = { name: string; description: string; inputSchema: Record<string, unknown> };

/** A call the model asked for. `arguments` is null when what the model sent is not a JSON object. */
export type ToolCall = { id: string; name: string; arguments: Record<string, unknown> | null };

/**
 * One turn of a conversation as the model sees it. An assistant turn may carry the tool calls it
 * asked for; each `tool` turn answers one of them by `toolCallId`.
 */
export type ChatMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] }
  | { role: 'tool'; toolCallId: string; content: string };

/** One model call: the conversation, the shape of the answer, and the run it belongs to. */
export type ModelRequest = {
  messages: ChatMessage[];
  /** `json` asks the provider for a single JSON object (where the provider supports it). */
  responseFormat: 'text' | 'json';
  /** The tools the model may call; absent or empty offers none. */
  tools?: ToolSpec[];
  /** The caller's cancellation (the job's signal); an abort stops the call at once. */
  signal?: AbortSignal;
  /** The run's W3C trace id, carried into logs. */
  traceId: string;
};

/** A model's answer and what it cost. */
export type ModelResult = {
  /** The answer's text; may be empty when the model asked for tools instead. */
  text: string;
  /** The tools the model asked to call, in its order; empty when it answered in text. */
  toolCalls: ToolCall[];
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
